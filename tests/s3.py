"""The S3 storage fixture: Django's default storage in a fresh bucket of a real S3 server.

The server is moto's, on loopback (`.ci/run` starts it and sets S3_TEST_ENDPOINT_URL). A test
module imports the fixture and names it in `usefixtures`, then works through `default_storage`:

    from tests.s3 import s3_storage  # noqa: F401

    @pytest.mark.usefixtures("s3_storage")
    def test_...() -> None: ...

(Taking `s3_storage` as an argument instead makes ruff read the argument as a redefinition of
the import, F811; `pytest_plugins = ["tests.s3"]` in tests/conftest.py would allow that.)
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import boto3
import pytest
from django.conf import settings
from django.core.files.storage import storages
from django.test import override_settings
from storages.backends.s3 import S3Storage

from config.settings.base import s3_storage_options

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client
    from types_boto3_s3.type_defs import ObjectIdentifierTypeDef

ENDPOINT_VARIABLE = "S3_TEST_ENDPOINT_URL"
# moto accepts any keys; these are the ones its documentation uses.
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"
REGION = "us-east-1"


def s3_test_endpoint_url() -> str:
    """Return the S3 test server's URL; skip the test without one (fail it under CI)."""
    url = os.environ.get(ENDPOINT_VARIABLE, "")
    if url:
        return url
    reason = (
        f"{ENDPOINT_VARIABLE} is not set: start `.venv/bin/moto_server -H 127.0.0.1 -p 9310` "
        f"and set it to http://127.0.0.1:9310 (.ci/run does both)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the S3 storage tests, but {reason}", pytrace=False)
    pytest.skip(reason)


def s3_client(endpoint_url: str) -> S3Client:
    """Return a boto3 S3 client for the test server (for what the storage API cannot do)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )


def bucket_remove(client: S3Client, bucket: str) -> None:
    """Delete a bucket with everything in it, unfinished multipart uploads included."""
    for uploads in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for upload in uploads.get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
    for listing in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys: list[ObjectIdentifierTypeDef] = [
            {"Key": item["Key"]} for item in listing.get("Contents", [])
        ]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    client.delete_bucket(Bucket=bucket)


@contextmanager
def s3_default_storage(endpoint_url: str) -> Iterator[S3Storage]:
    """Make the default storage S3 in a new bucket, yield it, then remove the bucket.

    The storage has the production OPTIONS (`s3_storage_options`), and MEDIA_STORAGE_IS_S3 is
    True meanwhile. Overriding STORAGES fires `setting_changed`, on which Django forgets the
    storages it made, so `default_storage` is the S3 one inside and the previous one after.
    """
    client = s3_client(endpoint_url)
    bucket = f"switchboard-test-{uuid.uuid4().hex}"
    client.create_bucket(Bucket=bucket)
    default = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": s3_storage_options(
            bucket,
            endpoint_url=endpoint_url,
            region=REGION,
            access_key_id=ACCESS_KEY_ID,
            secret_access_key=SECRET_ACCESS_KEY,
            signed_url_seconds=settings.MEDIA_SIGNED_URL_SECONDS,
        ),
    }
    try:
        with override_settings(
            STORAGES={**settings.STORAGES, "default": default}, MEDIA_STORAGE_IS_S3=True
        ):
            yield storages["default"]
    finally:
        bucket_remove(client, bucket)


@pytest.fixture
def s3_storage() -> Iterator[S3Storage]:
    """Django's default storage, on the S3 test server in a bucket of this test's own."""
    with s3_default_storage(s3_test_endpoint_url()) as storage:
        yield storage
