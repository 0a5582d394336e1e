"""Media for the sandbox: the allowed types, multipart parsing, renditions and sample files."""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

# Appendix B, verbatim: the gallery's MIME types (E25).
ALLOWED_MIME_TYPES = frozenset(
    [
        "image/png",
        "image/jpeg",
        "image/jpg",
        "image/gif",
        "image/svg+xml",
        "image/svg",
        "video/mp4",
        "video/m4v",
        "video/mpeg",
        "video/h263",
        "video/mpeg4",
        "video/webm",
        "video/ogg",
        "video/3gpp",
        "application/x-zip-compressed",
        "application/zip",
        "application/pdf",
        "application/xml",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/msword",
        "application/ogg",
        "application/xhtml+xml",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "audio/aac",
        "audio/x-aac",
        "audio/ogg",
        "audio/mp3",
        "audio/mpeg",
        "text/html",
        "text/csv",
        "text/xml",
        "image/webp",
        "application/octet-stream",
    ]
)
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # §2.1 Media object: "max size 50 MB"
# Renditions (§2.6 E28): the thumbnail fits 400x400, the preview 160x160.
RENDITION_SIZES = {"thumbnail": 400, "preview": 160}
# The XMS sandbox's committed video and voice note, read from disk (never imported).
XMS_ASSETS = Path(__file__).resolve().parent.parent / "sandbox" / "assets"


def media_kind(mime_type: str) -> str:
    """Return the Media object's `type` for a MIME type: image, video or file."""
    if mime_type.startswith("image/"):
        return "image"
    if mime_type.startswith("video/"):
        return "video"
    return "file"


def bare_mime(content_type: str) -> str:
    """Return a Content-Type without its parameters, lowercased."""
    return content_type.split(";", 1)[0].strip().lower()


@dataclass
class Part:
    """One part of a multipart/form-data body."""

    name: str
    filename: str | None
    content_type: str
    data: bytes


def parse_multipart(body: bytes, content_type: str) -> list[Part]:
    """Split a multipart/form-data body into its parts; raise ValueError if it is not one."""
    if bare_mime(content_type) != "multipart/form-data":
        raise ValueError("Content-Type must be multipart/form-data")
    boundary = ""
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary:
        raise ValueError("multipart/form-data without a boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    sections = body.split(delimiter)
    if len(sections) < 3:
        raise ValueError("no parts in the multipart body")
    parts = []
    for section in sections[1:]:
        if section.startswith(b"--"):
            break
        section = section.removeprefix(b"\r\n").removesuffix(b"\r\n")
        head, separator, data = section.partition(b"\r\n\r\n")
        if not separator:
            raise ValueError("a multipart part has no header end")
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        params = _disposition_params(disposition)
        parts.append(
            Part(
                name=params.get("name", ""),
                filename=params.get("filename"),
                content_type=headers.get("content-type", "application/octet-stream"),
                data=data,
            )
        )
    return parts


def _disposition_params(disposition: str) -> dict[str, str]:
    params = {}
    for item in disposition.split(";")[1:]:
        key, _, value = item.strip().partition("=")
        params[key.lower()] = value.strip().strip('"')
    return params


def png(width: int, height: int, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> bytes:
    """Return a PNG of a vertical gradient with a diagonal stripe, made with zlib and struct."""
    rows = bytearray()
    for y in range(height):
        t = y / max(height - 1, 1)
        color = bytes(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        rows.append(0)
        for x in range(width):
            rows += b"\xff\xff\xff" if (x + y) % 40 < 3 else color

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


def pdf(title: str, lines: list[str]) -> bytes:
    """Return a one-page PDF with a title and a few lines."""
    text = [f"BT /F1 20 Tf 72 760 Td ({title}) Tj ET"]
    text += [f"BT /F1 12 Tf 72 {720 - 18 * i} Td ({line}) Tj ET" for i, line in enumerate(lines)]
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
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


@cache
def sample_files() -> dict[str, tuple[str, bytes]]:
    """Return name -> (MIME type, bytes) of the files simulated customers send."""
    files = {
        "photo.png": ("image/png", png(480, 320, (52, 120, 190), (240, 170, 80))),
        "receipt.png": ("image/png", png(320, 480, (250, 250, 250), (120, 130, 150))),
        "invoice.pdf": (
            "application/pdf",
            pdf("Invoice 2026-0412", ["MessageWhiz sandbox", "Amount: 49.00 USD"]),
        ),
    }
    for name, mime in (("clip.mp4", "video/mp4"), ("voice.ogg", "audio/ogg")):
        path = XMS_ASSETS / name
        if path.exists():
            files[name] = (mime, path.read_bytes())
    return files


def rendition(data: bytes, size_type: str) -> tuple[str, bytes]:
    """Return (MIME type, bytes) of an image's thumbnail or preview, a JPEG made with Pillow.

    An image Pillow cannot read (an SVG, broken bytes) gets a generated PNG of the right size.
    """
    edge = RENDITION_SIZES[size_type]
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            image.thumbnail((edge, edge))
            out = io.BytesIO()
            image.convert("RGB").save(out, "JPEG", quality=80)
            return "image/jpeg", out.getvalue()
    except Exception:  # any undecodable image: a placeholder, as a platform would make
        return "image/png", png(edge, edge, (200, 200, 200), (140, 140, 140))
