"""ObjectStore against the real embedded SeaweedFS: write-once, checksums, Object Lock, presigned URLs."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import os
import socket
import time
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from botocore.utils import parse_timestamp

from storage.buckets import check_worm_bucket
from storage.errors import BucketNotWorm, ChecksumMismatch, ObjectConflict, ObjectMissing, StorageUnavailable
from storage.object_store import ObjectStore
from storage.s3_client import make_s3_client, read_timestamp, storage_error

pytestmark = pytest.mark.s3

PDF = b"%PDF-1.7\n" + b"original bytes of an authoritative copy\n" * 100


def _retain(days: int = 1) -> dt.datetime:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).replace(microsecond=0)


def _code(exc: ClientError) -> tuple[str, int]:
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


def test_put_write_once_stores_locked_bytes(s3_client: Any, worm_bucket: str) -> None:
    store = ObjectStore(s3_client, worm_bucket)
    until = _retain()
    stored = store.put_write_once("docs/a.pdf", PDF, retain_until=until)
    assert stored.version_id and stored.size == len(PDF)
    assert stored.sha256_hex == hashlib.sha256(PDF).hexdigest()
    info = store.head("docs/a.pdf", stored.version_id)
    assert (info.lock_mode, info.retain_until, info.sha256_hex) == ("COMPLIANCE", until, stored.sha256_hex)
    assert store.read("docs/a.pdf", stored.version_id) == PDF
    assert b"".join(store.iter_read("docs/a.pdf", stored.version_id, 100)) == PDF


def test_retry_with_same_bytes_returns_same_version(s3_client: Any, worm_bucket: str) -> None:
    store = ObjectStore(s3_client, worm_bucket)
    first = store.put_write_once("k.pdf", PDF, retain_until=_retain())
    again = store.put_write_once("k.pdf", PDF, retain_until=_retain())
    assert again == first
    assert store.list_versions("k.pdf") == [first.version_id]


def test_different_bytes_same_key_is_a_conflict(s3_client: Any, worm_bucket: str) -> None:
    store = ObjectStore(s3_client, worm_bucket)
    first = store.put_write_once("k.pdf", PDF, retain_until=_retain())
    with pytest.raises(ObjectConflict):
        store.put_write_once("k.pdf", PDF + b"tampered", retain_until=_retain())
    assert store.list_versions("k.pdf") == [first.version_id]
    assert store.read("k.pdf", first.version_id) == PDF


def test_server_refuses_a_wrong_checksum(s3_client: Any, worm_bucket: str) -> None:
    wrong = base64.b64encode(hashlib.sha256(b"other bytes").digest()).decode()
    with pytest.raises(ClientError) as caught:
        s3_client.put_object(Bucket=worm_bucket, Key="bad.pdf", Body=PDF, ChecksumSHA256=wrong)
    assert _code(caught.value) == ("BadDigest", 400)
    assert isinstance(storage_error(caught.value, "put"), ChecksumMismatch)
    assert ObjectStore(s3_client, worm_bucket).list_versions("bad.pdf") == []


def test_locked_version_survives_delete_and_shortening(s3_client: Any, worm_bucket: str) -> None:
    store = ObjectStore(s3_client, worm_bucket)
    until = _retain(days=30)
    stored = store.put_write_once("k.pdf", PDF, retain_until=until)
    with pytest.raises(ClientError) as caught:
        s3_client.delete_object(Bucket=worm_bucket, Key="k.pdf", VersionId=stored.version_id)
    assert _code(caught.value) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as caught:
        s3_client.put_object_retention(
            Bucket=worm_bucket,
            Key="k.pdf",
            VersionId=stored.version_id,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": _retain(days=1)},
            BypassGovernanceRetention=True,
        )
    assert _code(caught.value)[1] == 403
    assert s3_client.delete_object(Bucket=worm_bucket, Key="k.pdf").get("DeleteMarker") is True
    with pytest.raises(ObjectMissing):
        store.head("k.pdf", None)
    assert store.read("k.pdf", stored.version_id) == PDF
    assert store.head("k.pdf", stored.version_id).retain_until == until
    assert store.list_versions("k.pdf") == [stored.version_id]


def test_overwrite_is_refused_with_412(s3_client: Any, worm_bucket: str) -> None:
    store = ObjectStore(s3_client, worm_bucket)
    stored = store.put_write_once("k.pdf", PDF, retain_until=_retain())
    with pytest.raises(ClientError) as caught:
        s3_client.put_object(Bucket=worm_bucket, Key="k.pdf", Body=b"replacement", IfNoneMatch="*")
    assert _code(caught.value)[1] == 412
    assert isinstance(storage_error(caught.value, "put"), ObjectConflict)
    assert store.read("k.pdf", stored.version_id) == PDF


def test_presigned_get_downloads_exact_bytes(s3_client: Any, worm_bucket: str, embedded_s3: Any) -> None:
    store = ObjectStore(s3_client, worm_bucket)
    stored = store.put_write_once("p.pdf", PDF, retain_until=_retain())
    url = store.presign_get("p.pdf", stored.version_id, expires_in=60)
    assert f"versionId={stored.version_id}" in url
    assert httpx.get(url).content == PDF
    # Signed for another host name of the same server: the URL carries that host and still verifies.
    public = f"http://localhost:{embedded_s3.ports.s3}"
    public_url = store.presign_get("p.pdf", stored.version_id, expires_in=60, public_endpoint=public)
    assert public_url.startswith(public + "/")
    assert httpx.get(public_url).content == PDF


def test_presigned_get_expired_or_tampered_is_refused(s3_client: Any, worm_bucket: str) -> None:
    store = ObjectStore(s3_client, worm_bucket)
    stored = store.put_write_once("p.pdf", PDF, retain_until=_retain())
    url = store.presign_get("p.pdf", stored.version_id, expires_in=60)
    tampered = url.replace("p.pdf", "q.pdf")
    assert httpx.get(tampered).status_code == 403
    sig_at = url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
    flipped = url[:sig_at] + ("0" if url[sig_at] != "0" else "1") + url[sig_at + 1 :]
    assert httpx.get(flipped).status_code == 403
    short = store.presign_get("p.pdf", stored.version_id, expires_in=1)
    time.sleep(2)
    response = httpx.get(short)
    assert response.status_code == 403 and b"expired" in response.content


def test_check_worm_bucket(s3_client: Any, worm_bucket: str, plain_bucket: str) -> None:
    check_worm_bucket(s3_client, worm_bucket)
    with pytest.raises(BucketNotWorm, match="Object Lock"):
        check_worm_bucket(s3_client, plain_bucket)


def test_put_plain_is_checksummed_and_never_overwrites(s3_client: Any, plain_bucket: str) -> None:
    store = ObjectStore(s3_client, plain_bucket)
    stored = store.put_plain("copy.pdf", PDF, "application/pdf")
    assert stored.version_id and store.read("copy.pdf", stored.version_id) == PDF
    assert store.head("copy.pdf", stored.version_id).lock_mode is None
    assert store.put_plain("copy.pdf", PDF, "application/pdf") == stored
    with pytest.raises(ObjectConflict):
        store.put_plain("copy.pdf", b"other", "application/pdf")


def test_missing_version_is_object_missing(s3_client: Any, worm_bucket: str) -> None:
    store = ObjectStore(s3_client, worm_bucket)
    stored = store.put_write_once("k.pdf", PDF, retain_until=_retain())
    with pytest.raises(ObjectMissing):
        store.head("nope.pdf", None)
    with pytest.raises(ObjectMissing):
        store.read("nope.pdf", stored.version_id)


def _sent_headers(s3_client: Any) -> list[dict[str, str]]:
    """Headers of every PutObject request this client sends from now on (a botocore event hook)."""
    sent: list[dict[str, str]] = []

    def capture(request: Any, **_: Any) -> None:
        sent.append({k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})

    s3_client.meta.events.register("before-send.s3.PutObject", capture)
    return sent


def test_put_write_once_file_streams_with_the_callers_digest_unsigned(s3_client: Any, worm_bucket: str) -> None:
    store = ObjectStore(s3_client, worm_bucket)
    data = os.urandom(3 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    sent = _sent_headers(s3_client)
    stored = store.put_write_once_file("f.pdf", io.BytesIO(data), len(data), digest, retain_until=_retain())
    assert (stored.sha256_hex, stored.size) == (digest, len(data))
    assert store.read("f.pdf", stored.version_id) == data
    (headers,) = sent
    # botocore did not hash the body for the signature; the server checks the signed checksum header instead.
    assert headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    assert headers["x-amz-checksum-sha256"] == base64.b64encode(bytes.fromhex(digest)).decode()
    assert "x-amz-checksum-sha256" in headers["Authorization"]


def test_put_write_once_file_with_a_wrong_digest_is_refused_unsigned(s3_client: Any, worm_bucket: str) -> None:
    store = ObjectStore(s3_client, worm_bucket)
    sent = _sent_headers(s3_client)
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    with pytest.raises(ChecksumMismatch):
        store.put_write_once_file("w.pdf", io.BytesIO(PDF), len(PDF), wrong, retain_until=_retain())
    assert sent and sent[0]["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    assert store.list_versions("w.pdf") == []


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Dec 2026 03:46:04 GMT",  # Last-Modified
        "Mon, 7 Dec 2026 23:59:59 GMT",
        "2036-12-06T03:46:04Z",  # the lock's retain-until date
        "2036-12-06T03:46:04.123Z",
        "2026-12-06T03:46:04.123456+00:00",
        "2026-12-06T05:46:04+02:00",
        "20261206T034604Z",
        "1764992764",  # seconds since the epoch: botocore's own parser
        "1764992764.5",
    ],
)
def test_timestamps_read_as_botocore_reads_them(value: str) -> None:
    ours, theirs = read_timestamp(value), parse_timestamp(value)
    assert ours == theirs and ours.utcoffset() == theirs.utcoffset()


@pytest.mark.parametrize("value", ["", "yesterday", "2026-13-45T00:00:00Z", "Sun, 32 Foo 2026 99:00:00 GMT"])
def test_unreadable_timestamps_fail_as_botocore_fails(value: str) -> None:
    with pytest.raises(ValueError) as theirs:
        parse_timestamp(value)
    with pytest.raises(ValueError) as ours:
        read_timestamp(value)
    assert type(ours.value) is type(theirs.value)


def test_a_head_reads_its_dates_with_the_standard_library(s3_client: Any, worm_bucket: str) -> None:
    """The store's answers go through ``read_timestamp`` (dateutil would give its own ``tzutc``)."""
    store = ObjectStore(s3_client, worm_bucket)
    until = _retain()
    stored = store.put_write_once("dates.pdf", PDF, retain_until=until)
    head = s3_client.head_object(Bucket=worm_bucket, Key="dates.pdf", VersionId=stored.version_id)
    assert head["ObjectLockRetainUntilDate"] == until
    assert head["ObjectLockRetainUntilDate"].tzinfo is dt.UTC and head["LastModified"].tzinfo is dt.UTC
    assert store.head("dates.pdf", stored.version_id).retain_until == until


@pytest.mark.parametrize(("options", "sent"), [({"attempts": 1}, 1), ({"attempts": 2}, 2), ({"quick": True}, 1)])
def test_a_client_makes_as_many_attempts_as_it_is_given(options: dict[str, Any], sent: int) -> None:
    """Counted at the wire (botocore's ``before-send``), against a port nothing listens on. botocore's own
    ``max_attempts`` counts retries: given there, ``attempts=1`` and the probes' ``quick`` sent two."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: connections to it are refused
    client = make_s3_client(f"http://127.0.0.1:{port}", "access", "secret", "us-east-1", **options)
    attempts: list[str] = []
    client.meta.events.register("before-send.s3", lambda request, **_: attempts.append(request.url))
    with pytest.raises(StorageUnavailable):
        check_worm_bucket(client, "nothing-here")  # its first request fails, and is retried by botocore alone
    assert len(attempts) == sent
