"""Stored files on S3-compatible object storage, through Django's default storage.

The files go to a real S3 API (moto's server on loopback, see tests/s3.py); the settings tests
run config/settings/base.py afresh with the environment they name. Not tested here: that an
expired signed link is refused. moto does not check expiry, and a test that waits for a link to
expire would be a timing test.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import runpy
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest
import requests
from botocore.exceptions import ClientError
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import InMemoryStorage, default_storage
from storages.backends.s3 import S3Storage

from config.env import BASE_DIR
from tests.s3 import s3_client, s3_default_storage, s3_storage, s3_test_endpoint_url  # noqa: F401

MiB = 1024 * 1024
S3_VARIABLES = (
    "S3_BUCKET",
    "S3_ENDPOINT_URL",
    "S3_REGION",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
    "S3_ADDRESSING_STYLE",
    "S3_LOCATION",
    "MEDIA_SIGNED_URL_SECONDS",
)
# django.core.files.storage.default_storage itself, typed as the S3Storage that the s3_storage
# fixture makes it (url's parameters and expire, the bucket, the boto3 connection).
default_s3: S3Storage = default_storage


class GeneratedFile(io.RawIOBase):
    """A file of pseudo-random bytes made as they are read; it cannot seek back.

    It keeps the digest of what it handed out and the size of every read asked of it.
    """

    def __init__(self, size: int, seed: int) -> None:
        super().__init__()
        self._left = size
        self._random = random.Random(seed)
        self.digest = hashlib.sha256()
        self.read_sizes: list[int] = []

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1, /) -> bytes:
        self.read_sizes.append(size)
        count = self._left if size < 0 else min(size, self._left)
        data = self._random.randbytes(count)
        self._left -= count
        self.digest.update(data)
        return data


def stored_digest(name: str, chunk_size: int) -> tuple[str, list[int]]:
    """Read a stored file chunk by chunk: its sha256 and the size of each chunk."""
    digest = hashlib.sha256()
    sizes = []
    with default_storage.open(name, "rb") as stored:
        for chunk in stored.chunks(chunk_size=chunk_size):
            digest.update(chunk)
            sizes.append(len(chunk))
    return digest.hexdigest(), sizes


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """An HTTP client that goes straight to loopback, whatever proxy the environment names."""
    with requests.Session() as session:
        session.trust_env = False
        yield session


@pytest.mark.usefixtures("s3_storage")
def test_a_saved_file_reads_back_byte_for_byte_in_chunks() -> None:
    data = os.urandom(3 * MiB + 12345)

    name = default_storage.save("uploads/2026/12/blob.bin", ContentFile(data))

    assert default_storage.size(name) == len(data)
    digest, sizes = stored_digest(name, chunk_size=256 * 1024)
    assert digest == hashlib.sha256(data).hexdigest()
    assert len(sizes) == 13
    assert max(sizes) == 256 * 1024


@pytest.mark.usefixtures("s3_storage")
def test_a_saved_name_never_overwrites_an_existing_file() -> None:
    first = default_storage.save("uploads/report.pdf", ContentFile(b"first"))
    second = default_storage.save("uploads/report.pdf", ContentFile(b"second"))

    assert first == "uploads/report.pdf"
    assert second != first
    assert second.startswith("uploads/report_")
    assert second.endswith(".pdf")
    with default_storage.open(first, "rb") as stored:
        assert stored.read() == b"first"
    with default_storage.open(second, "rb") as stored:
        assert stored.read() == b"second"


@pytest.mark.usefixtures("s3_storage")
def test_a_signed_url_serves_the_bytes_with_the_headers_it_was_signed_for(
    http: requests.Session,
) -> None:
    data = os.urandom(64 * 1024)
    name = default_storage.save("uploads/photo.bin", ContentFile(data))
    disposition = "attachment; filename=\"photo.jpg\"; filename*=UTF-8''%E5%86%99%E7%9C%9F.jpg"

    url = default_s3.url(
        name,
        parameters={
            "ResponseContentType": "image/jpeg",
            "ResponseContentDisposition": disposition,
        },
        expire=60,
    )
    response = http.get(url, timeout=10)

    assert response.status_code == 200
    assert response.content == data
    assert response.headers["Content-Type"] == "image/jpeg"
    assert response.headers["Content-Disposition"] == disposition
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["60"]


@pytest.mark.usefixtures("s3_storage")
def test_a_stored_file_is_refused_without_a_signature(http: requests.Session) -> None:
    name = default_storage.save("uploads/private.txt", ContentFile(b"private"))
    url = default_storage.url(name)

    response = http.get(urlunsplit(urlsplit(url)._replace(query="")), timeout=10)

    assert response.status_code == 403
    assert b"private" not in response.content


@pytest.mark.usefixtures("s3_storage")
def test_a_signed_url_lasts_media_signed_url_seconds_unless_told_otherwise() -> None:
    name = default_storage.save("uploads/a.txt", ContentFile(b"a"))

    query = parse_qs(urlsplit(default_storage.url(name)).query)

    assert query["X-Amz-Expires"] == [str(settings.MEDIA_SIGNED_URL_SECONDS)]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]


@pytest.mark.usefixtures("s3_storage")
def test_a_deleted_file_is_gone_and_its_signed_url_finds_nothing(http: requests.Session) -> None:
    name = default_storage.save("uploads/gone.txt", ContentFile(b"soon gone"))
    url = default_s3.url(name, expire=60)
    assert http.get(url, timeout=10).status_code == 200

    default_storage.delete(name)

    assert not default_storage.exists(name)
    assert http.get(url, timeout=10).status_code == 404


@pytest.mark.usefixtures("s3_storage")
def test_a_file_past_the_multipart_threshold_goes_up_in_parts_never_read_whole() -> None:
    size = 10 * MiB + 1
    source = GeneratedFile(size, seed=15)

    name = default_s3.save("uploads/video.bin", source)

    # Read piece by piece (boto3's 8 MiB parts), never all at once, and stored as a multipart
    # object: its ETag ends with the number of parts.
    assert source.read_sizes
    assert all(0 < asked < size for asked in source.read_sizes)
    client = default_s3.connection.meta.client
    head = client.head_object(Bucket=default_s3.bucket_name, Key=name)
    assert head["ContentLength"] == size
    assert head["ETag"].strip('"').endswith("-2")
    digest, _ = stored_digest(name, chunk_size=MiB)
    assert digest == source.digest.hexdigest()


def test_the_default_storage_is_s3_only_while_the_bucket_is_held() -> None:
    endpoint_url = s3_test_endpoint_url()
    flag_before = settings.MEDIA_STORAGE_IS_S3
    assert isinstance(default_storage, InMemoryStorage)

    with s3_default_storage(endpoint_url) as storage:
        assert isinstance(default_storage, S3Storage)
        assert default_s3.bucket_name == storage.bucket_name
        assert settings.MEDIA_STORAGE_IS_S3 is True
        default_storage.save("left/behind.txt", ContentFile(b"removed with its bucket"))
        bucket = storage.bucket_name

    assert isinstance(default_storage, InMemoryStorage)
    assert settings.MEDIA_STORAGE_IS_S3 is flag_before
    with pytest.raises(ClientError) as missing:
        s3_client(endpoint_url).head_bucket(Bucket=bucket)
    assert missing.value.response["Error"]["Code"] == "404"


# --- The settings, read from the environment --------------------------------------------------


def base_settings(monkeypatch: pytest.MonkeyPatch, **environ: str) -> dict[str, Any]:
    """Run config/settings/base.py afresh with these S3 variables (and no others) set."""
    for variable in S3_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environ.items():
        monkeypatch.setenv(variable, value)
    return runpy.run_path(str(BASE_DIR / "config" / "settings" / "base.py"))


def test_without_s3_bucket_files_stay_on_the_filesystem_under_var_media(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    namespace = base_settings(monkeypatch)

    assert namespace["STORAGES"]["default"] == {
        "BACKEND": "django.core.files.storage.FileSystemStorage"
    }
    assert namespace["MEDIA_ROOT"] == namespace["VAR_DIR"] / "media"
    assert namespace["MEDIA_STORAGE_IS_S3"] is False


def test_s3_bucket_makes_the_default_storage_s3_with_the_environments_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    namespace = base_settings(
        monkeypatch,
        S3_BUCKET="media",
        S3_ENDPOINT_URL="http://minio:9000",
        S3_REGION="eu-west-3",
        S3_ACCESS_KEY_ID="key-id",
        S3_SECRET_ACCESS_KEY="secret",
        S3_LOCATION="switchboard",
        MEDIA_SIGNED_URL_SECONDS="120",
    )

    default = namespace["STORAGES"]["default"]
    assert namespace["MEDIA_STORAGE_IS_S3"] is True
    assert namespace["MEDIA_SIGNED_URL_SECONDS"] == 120
    assert default["BACKEND"] == "storages.backends.s3.S3Storage"
    assert default["OPTIONS"] == {
        "bucket_name": "media",
        "endpoint_url": "http://minio:9000",
        "region_name": "eu-west-3",
        "access_key": "key-id",
        "secret_key": "secret",
        "addressing_style": "path",
        "location": "switchboard",
        "default_acl": None,
        "file_overwrite": False,
        "querystring_auth": True,
        "querystring_expire": 120,
        "signature_version": "s3v4",
        "max_memory_size": 2 * MiB,
    }
    # django-storages refuses an option it does not know; making the storage calls nobody.
    storage = S3Storage(**default["OPTIONS"])
    assert storage.querystring_expire == 120


def test_aws_s3_needs_only_a_bucket_and_finds_its_own_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    options = base_settings(monkeypatch, S3_BUCKET="media")["STORAGES"]["default"]["OPTIONS"]

    assert options["region_name"] == "us-east-1"
    assert options["addressing_style"] == "auto"
    assert options["querystring_expire"] == 300
    assert not {"endpoint_url", "access_key", "secret_key", "location"} & set(options)


@pytest.mark.parametrize(
    "environ",
    [
        {"S3_ADDRESSING_STYLE": "sideways"},
        {"S3_ACCESS_KEY_ID": "key-id"},
        {"S3_SECRET_ACCESS_KEY": "secret"},
    ],
    ids=["unknown addressing style", "key id alone", "secret alone"],
)
def test_a_half_or_wrong_s3_configuration_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]
) -> None:
    with pytest.raises(ImproperlyConfigured):
        base_settings(monkeypatch, S3_BUCKET="media", **environ)
