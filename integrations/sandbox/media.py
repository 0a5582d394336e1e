"""Small media files the sandbox generates and serves, so threads can show real media.

Also big files made of a repeating pattern, streamed in chunks and never held whole, and the
byte-level faults its media links inject (spec §3.2 InBoundMsgMedia).
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
import wave
import zlib
from collections.abc import Iterable, Iterator
from functools import cache, lru_cache
from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
CHUNK_BYTES = 64 * 1024
# A generated file bigger than this is refused: enough to exceed any sane upload limit.
MAX_GENERATED_BYTES = 200 * 1024 * 1024
_PATTERN = bytes(range(256)) * (CHUNK_BYTES // 256)


def _png(width: int, height: int, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> bytes:
    rows = bytearray()
    for y in range(height):
        t = y / max(height - 1, 1)
        color = bytes(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        # A diagonal stripe so it is visibly an image, not a flat box.
        rows.append(0)
        for x in range(width):
            rows += b"\xff\xff\xff" if (x + y) % 40 < 3 else color

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


def _wav(seconds: float = 1.5, frequency: float = 440.0, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = bytearray()
        for i in range(int(seconds * rate)):
            envelope = min(1.0, i / 400, (seconds * rate - i) / 400)
            value = int(12000 * envelope * math.sin(2 * math.pi * frequency * i / rate))
            frames += struct.pack("<h", value)
        out.writeframes(bytes(frames))
    return buffer.getvalue()


def _pdf(title: str, lines: list[str]) -> bytes:
    text = [f"BT /F1 20 Tf 72 760 Td ({title}) Tj ET"]
    for i, line in enumerate(lines):
        text.append(f"BT /F1 12 Tf 72 {720 - 18 * i} Td ({line}) Tj ET")
    stream = "\n".join(text).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


@cache
def media_files() -> dict[str, tuple[str, bytes]]:
    """Return name -> (mime type, bytes) for every file the sandbox serves."""
    files = {
        "photo.png": ("image/png", _png(480, 320, (52, 120, 190), (240, 170, 80))),
        "delivery.png": ("image/png", _png(320, 240, (60, 160, 90), (230, 230, 230))),
        "screenshot.png": ("image/png", _png(360, 640, (250, 250, 250), (120, 130, 150))),
        "audio.wav": ("audio/wav", _wav(2.0, 523.25)),
        "voice.wav": ("audio/wav", _wav(1.2, 330.0)),
        "invoice.pdf": (
            "application/pdf",
            _pdf("Invoice 2026-1183", ["Switchboard sandbox", "Amount: 49.00 EUR", "Due: 30 days"]),
        ),
    }
    # Encoded video and Opus audio cannot be produced without a codec; these two small files
    # were made once with ffmpeg (assets/README.md says how) and are served as they are.
    for name, mime in (("clip.mp4", "video/mp4"), ("voice.ogg", "audio/ogg; codecs=opus")):
        path = ASSETS / name
        if path.exists():
            files[name] = (mime, path.read_bytes())
    return files


@cache
def file_sha256(name: str) -> str:
    """Return the lowercase hex SHA-256 of a served file (the media object's `sha256`)."""
    return hashlib.sha256(media_files()[name][1]).hexdigest()


def content_type_for(name: str) -> str:
    """Return the Content-Type for a file name, from the types of the files the sandbox serves."""
    suffix = Path(name).suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        return "image/jpeg"
    for served, (mime, _) in media_files().items():
        if Path(served).suffix == suffix:
            return mime
    return "application/octet-stream"


def file_chunks(data: bytes) -> Iterator[bytes]:
    """Yield a file's bytes in chunks."""
    for start in range(0, len(data), CHUNK_BYTES):
        yield data[start : start + CHUNK_BYTES]


def generated_chunks(size: int) -> Iterator[bytes]:
    """Yield `size` deterministic bytes (0..255 repeating) in chunks; nothing is held but one."""
    whole, rest = divmod(size, CHUNK_BYTES)
    for _ in range(whole):
        yield _PATTERN
    if rest:
        yield _PATTERN[:rest]


@lru_cache(maxsize=32)
def generated_sha256(size: int) -> str:
    """Return the hex SHA-256 of the generated file of `size` bytes."""
    digest = hashlib.sha256()
    for chunk in generated_chunks(size):
        digest.update(chunk)
    return digest.hexdigest()


def corrupted(chunks: Iterable[bytes], at: int) -> Iterator[bytes]:
    """Yield the chunks with the byte at offset `at` inverted.

    The length and the first bytes stay as they were, so the file still looks like its type and
    only a checksum check notices.
    """
    offset = 0
    for chunk in chunks:
        if offset <= at < offset + len(chunk):
            i = at - offset
            chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1 :]
        offset += len(chunk)
        yield chunk
