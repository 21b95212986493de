"""The S3 client the vault uses, and what its failures mean in the vault's terms (``storage.errors``).

One place builds every client (path-style SigV4, our own SHA-256 instead of botocore's CRC32, no second hash
of the body for the signature), so the service, the verifier, the CLI and the tests talk to S3 alike.
"""

from __future__ import annotations

import base64
import binascii
import threading
import weakref
from datetime import datetime
from email.utils import parsedate_to_datetime
from functools import cache
from typing import TYPE_CHECKING, Any, NoReturn

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, FlexibleChecksumError
from botocore.utils import parse_timestamp

from storage.errors import ChecksumMismatch, ObjectConflict, ObjectMissing, StorageError, StorageUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

_CHECKSUM_CODES = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "InvalidChecksum"}
_MISSING_CODES = {"NoSuchKey", "NoSuchVersion", "NoSuchBucket", "404", "NotFound"}
# Parameters each client was built with, so a presigning client for another host can reuse them.
_CLIENT_PARAMS: weakref.WeakKeyDictionary[Any, tuple[str, str, str, bool]] = weakref.WeakKeyDictionary()


def read_timestamp(value: str) -> datetime:
    """botocore's timestamp, read by the standard library: ISO 8601 (XML bodies, the lock's retain-until date)
    and RFC 7231 (``Last-Modified``). botocore's own parser (dateutil) takes ~0.1 ms a timestamp, so a HEAD
    spent ~0.2 ms reading its two and a page of 1,000 listed versions ~0.1 s. Anything else, or without a
    zone, goes to botocore's parser, whose answer and errors stay botocore's."""
    try:
        parsed = datetime.fromisoformat(value) if value[:4].isdigit() else parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return parse_timestamp(value)
    return parsed if parsed.tzinfo is not None else parse_timestamp(value)


_SESSION_LOCK = threading.Lock()  # a boto3 session is not safe to build clients from in two threads at once


@cache
def _session() -> boto3.Session:
    """One session for every client (made under ``_SESSION_LOCK``), whose responses read their timestamps with
    :func:`read_timestamp`."""
    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=read_timestamp)
    return boto3.Session(botocore_session=core)


def make_s3_client(
    endpoint: str, access_key: str, secret_key: str, region: str, *, quick: bool = False, attempts: int = 5
) -> S3Client:
    """Path-style SigV4 client; ``quick`` (short timeouts, one attempt) is for readiness probes; ``attempts`` is
    botocore's budget of attempts in all, the first included (the verifier retries itself, with one attempt
    each: a damaged needle costs SeaweedFS ~13 s a GET before its 500)."""
    config = Config(
        signature_version="s3v4",
        region_name=region,
        # UNSIGNED-PAYLOAD: botocore would otherwise hash every body a second time for the SigV4 signature over
        # plain http. The body is still bound: every put carries ChecksumSHA256 (a signed header), which the
        # server checks against the bytes it receives (a wrong one is 400 BadDigest, tested).
        s3={"addressing_style": "path", "payload_signing_enabled": False},
        # total_max_attempts counts the first attempt; botocore's max_attempts counts retries, so the 1 it was
        # given here meant two attempts, which doubled a damaged needle's wait for probes and the verifier.
        retries={"total_max_attempts": 1 if quick else attempts, "mode": "standard"},
        connect_timeout=2 if quick else 5,
        read_timeout=5 if quick else 60,
        max_pool_connections=32,
        # We send and check SHA-256 ourselves; botocore's default CRC32 would be a second, weaker checksum.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    with _SESSION_LOCK:
        client: S3Client = _session().client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=region,
            config=config,
        )
    _CLIENT_PARAMS[client] = (access_key, secret_key, region, quick)
    return client


def error_code(exc: ClientError) -> tuple[str, int]:
    """The S3 error code and HTTP status of a failed request."""
    error: Any = exc.response.get("Error", {})
    meta: Any = exc.response.get("ResponseMetadata", {})
    return str(error.get("Code", "")), int(meta.get("HTTPStatusCode", 0))


def storage_error(exc: Exception, what: str) -> StorageError:
    """Translate a botocore failure into the storage error a caller can act on."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, FlexibleChecksumError):
        return ChecksumMismatch(f"{what}: {exc}")
    if isinstance(exc, ClientError):
        code, status = error_code(exc)
        message = f"{what}: {code or status} {exc.response.get('Error', {}).get('Message', '')}".rstrip()
        if code in _CHECKSUM_CODES:
            return ChecksumMismatch(message)
        if code in _MISSING_CODES or status == 404:
            return ObjectMissing(message)
        if code == "PreconditionFailed" or status == 412:
            return ObjectConflict(message)
        if status >= 500 or code in {"SlowDown", "ServiceUnavailable"}:
            return StorageUnavailable(message)
        return StorageError(message)
    if isinstance(exc, BotoCoreError):
        return StorageUnavailable(f"{what}: {exc}")
    return StorageError(f"{what}: {exc!r}")


def raise_storage_error(exc: Exception, what: str) -> NoReturn:
    """Raise :func:`storage_error` of ``exc``, chained to it."""
    raise storage_error(exc, what) from exc


def b64_to_hex(value: str | None) -> str | None:
    """A stored whole-object SHA-256 in hex; None for absent or composite (multipart ``...-N``) checksums."""
    if not value or "-" in value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def client_params(client: S3Client) -> tuple[str, str, str] | None:
    """Access key, secret key and region a client was made with (None if not by :func:`make_s3_client`)."""
    params = _CLIENT_PARAMS.get(client)
    return None if params is None else params[:3]
