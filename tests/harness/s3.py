"""MinIO as the tests reach it: S3 clients as a user (their server's ``AWS_*``) or as MinIO's admin
(the tests' view of every bucket), and MinIO's admin API."""

from __future__ import annotations

import os
from collections.abc import Mapping


def s3_client(env: Mapping[str, str], endpoint_url: str | None = None, session_token: str | None = None):
    """An S3 client with a user's server environment (``AWS_*``), failing fast.

    ``endpoint_url`` replaces ``AWS_ENDPOINT_URL`` when that address only works inside
    the user's server (a pod's in-cluster name); ``session_token`` is for STS keys.
    No retries: a refusal is what many tests expect, and it comes at once.
    """
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=session_token,
        region_name=env.get("AWS_DEFAULT_REGION") or "us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=15),
    )


def admin_s3(services: Mapping[str, str] | None = None):
    """An S3 client with MinIO's admin credentials (``ENERTEF_MINIO_*`` of ``services``, default the environment)."""
    import boto3

    services = os.environ if services is None else services
    return boto3.client(
        "s3",
        endpoint_url=services["ENERTEF_MINIO_ENDPOINT"],
        aws_access_key_id=services["ENERTEF_MINIO_ACCESS_KEY"],
        aws_secret_access_key=services["ENERTEF_MINIO_SECRET_KEY"],
        region_name="us-east-1",
    )


def bucket_exists(bucket: str) -> bool:
    """Whether ``bucket`` exists, as MinIO's admin sees it (credentials from the environment)."""
    from botocore.exceptions import ClientError

    try:
        admin_s3().head_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("404", "NoSuchBucket"):
            return False
        raise
    return True


def minio_admin(services: Mapping[str, str] | None = None):
    """MinIO's admin API (minio-py's ``MinioAdmin``) with the admin credentials of ``services`` (default the environment)."""
    from urllib.parse import urlsplit

    from minio import MinioAdmin
    from minio.credentials import StaticProvider

    services = os.environ if services is None else services
    endpoint = urlsplit(services["ENERTEF_MINIO_ENDPOINT"])
    return MinioAdmin(endpoint=endpoint.netloc, secure=endpoint.scheme == "https",
                      credentials=StaticProvider(services["ENERTEF_MINIO_ACCESS_KEY"],
                                                 services["ENERTEF_MINIO_SECRET_KEY"]))
