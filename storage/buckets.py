"""The buckets the vault needs: created when missing, and refused when they could lose or replace originals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from storage.errors import BucketNotWorm
from storage.s3_client import error_code, raise_storage_error

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any


def ensure_bucket(client: S3Client, bucket: str, *, object_lock: bool) -> None:
    """Create the bucket if missing: with Object Lock (implies versioning) or, otherwise, with versioning."""
    try:
        client.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        if error_code(exc)[1] != 404:
            raise_storage_error(exc, f"head bucket {bucket}")
    except BotoCoreError as exc:
        raise_storage_error(exc, f"head bucket {bucket}")
    kwargs: dict[str, Any] = {"Bucket": bucket}
    region = client.meta.region_name
    if region and region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    if object_lock:
        kwargs["ObjectLockEnabledForBucket"] = True
    try:
        client.create_bucket(**kwargs)
        if not object_lock:
            client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    except ClientError as exc:
        if error_code(exc)[0] != "BucketAlreadyOwnedByYou":
            raise_storage_error(exc, f"create bucket {bucket}")
    except BotoCoreError as exc:
        raise_storage_error(exc, f"create bucket {bucket}")


def check_worm_bucket(client: S3Client, bucket: str) -> None:
    """Refuse to hold originals in a bucket that could lose or replace them (raise :class:`BucketNotWorm`)."""
    missing: list[str] = []
    try:
        status = client.get_bucket_versioning(Bucket=bucket).get("Status")
        if status != "Enabled":
            missing.append(f"versioning is {status or 'never enabled'}, must be Enabled")
        try:
            lock = client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
            if lock.get("ObjectLockEnabled") != "Enabled":
                missing.append("Object Lock is not Enabled")
        except ClientError as exc:
            if error_code(exc)[0] != "ObjectLockConfigurationNotFoundError":
                raise
            missing.append("Object Lock is not enabled (it can only be enabled when the bucket is created)")
    except (ClientError, BotoCoreError) as exc:
        raise_storage_error(exc, f"check bucket {bucket}")
    if missing:
        raise BucketNotWorm(f"bucket {bucket!r} is not write-once: " + "; ".join(missing))


def bucket_problems(client: S3Client, bucket: str, *, worm: bool) -> list[str]:
    """What is wrong with a bucket's configuration (empty when sound): it exists, versioning is Enabled and,
    for the WORM bucket, Object Lock is enabled. Raises :class:`StorageError` only when S3 cannot answer."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc)[1] == 404:
            return [f"bucket {bucket!r} does not exist"]
        raise_storage_error(exc, f"head bucket {bucket}")
    except BotoCoreError as exc:
        raise_storage_error(exc, f"head bucket {bucket}")
    if worm:
        try:
            check_worm_bucket(client, bucket)
        except BucketNotWorm as exc:
            return [str(exc)]
        return []
    try:
        status = client.get_bucket_versioning(Bucket=bucket).get("Status")
    except (ClientError, BotoCoreError) as exc:
        raise_storage_error(exc, f"check bucket {bucket}")
    return [] if status == "Enabled" else [f"bucket {bucket!r} versioning is {status or 'never enabled'}"]
