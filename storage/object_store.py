"""Write-once object storage over any S3 API (boto3), in the vault's terms; no HTTP-layer knowledge.

Authoritative objects are addressed by version id, always: ``IfNoneMatch='*'`` does not stop a new version
when the current one is a delete marker (seen on SeaweedFS), so "the object at key K" is not a stable notion.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from storage.errors import ChecksumMismatch, ObjectConflict, StorageError, StorageUnavailable
from storage.s3_client import (
    b64_to_hex,
    client_params,
    make_s3_client,
    raise_storage_error,
    storage_error,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any


@dataclass(frozen=True)
class StoredObject:
    """What was stored; ``version_id`` is the address of these bytes from now on ("null" if unversioned)."""

    key: str
    version_id: str
    sha256_hex: str
    size: int


@dataclass(frozen=True)
class ObjectInfo:
    """A version's metadata as the server reports it; ``sha256_hex`` is the checksum stored at put time."""

    version_id: str
    size: int
    sha256_hex: str | None
    lock_mode: str | None
    retain_until: dt.datetime | None
    etag: str
    legal_hold: bool = False  # S3 Object Lock legal hold, as the GET's or HEAD's own header reports it


@dataclass(frozen=True)
class VersionEntry:
    """One row of a version listing: a version or a delete marker of ``key``."""

    key: str
    version_id: str
    delete_marker: bool
    is_latest: bool
    last_modified: dt.datetime | None
    size: int | None = None  # of a version; None for a delete marker


class ObjectStore:
    """One bucket seen as write-once storage: puts never replace bytes, reads check what they got."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self.client = client
        self.bucket = bucket
        self._presigners: dict[str, S3Client] = {}

    def put_write_once(
        self,
        key: str,
        data: bytes,
        *,
        retain_until: dt.datetime | None,
        content_type: str = "application/pdf",
    ) -> StoredObject:
        """Store ``data`` once under ``key`` (COMPLIANCE-locked when ``retain_until``); safe to retry."""
        if retain_until is not None and retain_until.tzinfo is None:
            raise ValueError("retain_until must be timezone-aware")
        stored = self._put(key, data, hashlib.sha256(data).hexdigest(), len(data), content_type, retain_until)
        if retain_until is not None:
            self._check_lock(stored, retain_until)
        return stored

    def put_write_once_file(
        self,
        key: str,
        body: BinaryIO,
        size: int,
        sha256_hex: str,
        *,
        retain_until: dt.datetime | None,
        content_type: str = "application/pdf",
    ) -> StoredObject:
        """As :meth:`put_write_once`, streaming ``size`` bytes from a seekable ``body`` whose SHA-256 the caller
        computed while receiving them: one full-object put (a multipart checksum would be composite), hashed by
        nobody here again; the server checks ``sha256_hex`` against what it receives."""
        if retain_until is not None and retain_until.tzinfo is None:
            raise ValueError("retain_until must be timezone-aware")
        stored = self._put(key, body, sha256_hex, size, content_type, retain_until)
        if retain_until is not None:
            self._check_lock(stored, retain_until)
        return stored

    def put_plain(self, key: str, data: bytes, content_type: str) -> StoredObject:
        """Store a non-authoritative object (copies bucket): still checksummed and never overwriting."""
        return self._put(key, data, hashlib.sha256(data).hexdigest(), len(data), content_type, None)

    def _put(
        self,
        key: str,
        body: bytes | BinaryIO,
        sha256_hex: str,
        size: int,
        content_type: str,
        retain_until: dt.datetime | None,
    ) -> StoredObject:
        ours = StoredObject(key, "", sha256_hex, size)
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": body,
            "ContentLength": size,
            "ContentType": content_type,
            "ChecksumSHA256": base64.b64encode(bytes.fromhex(sha256_hex)).decode(),
            "IfNoneMatch": "*",
        }
        if retain_until is not None:
            kwargs["ObjectLockMode"] = "COMPLIANCE"
            kwargs["ObjectLockRetainUntilDate"] = retain_until
        try:
            response = self.client.put_object(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            error = storage_error(exc, f"put {self.bucket}/{key}")
            # SeaweedFS answers 500, not 412, to the loser of two racing conditional puts of one key: when the
            # key now exists, judge it as a 412 (identical bytes are ours; other bytes are a conflict).
            if isinstance(error, ObjectConflict) or (isinstance(error, StorageUnavailable) and self._exists(key)):
                return self._existing_or_conflict(ours)
            raise error from exc
        echoed = b64_to_hex(response.get("ChecksumSHA256"))
        if echoed is not None and echoed != ours.sha256_hex:
            raise ChecksumMismatch(f"put {self.bucket}/{key}: server stored SHA-256 {echoed}, sent {ours.sha256_hex}")
        return StoredObject(key, response.get("VersionId") or "null", ours.sha256_hex, ours.size)

    def _exists(self, key: str) -> bool:
        try:
            self.head(key, None)
        except StorageError:
            return False
        return True

    def _existing_or_conflict(self, ours: StoredObject) -> StoredObject:
        """A 412 means the key exists: identical bytes make this a retry of an earlier success."""
        current = self.head(ours.key, None)
        if current.sha256_hex == ours.sha256_hex and current.size == ours.size:
            return StoredObject(ours.key, current.version_id, ours.sha256_hex, ours.size)
        raise ObjectConflict(
            f"{self.bucket}/{ours.key} already holds other bytes (version {current.version_id}, "
            f"sha256 {current.sha256_hex or 'not stored'}, {current.size} bytes)"
        )

    def _check_lock(self, stored: StoredObject, retain_until: dt.datetime) -> None:
        """Some stores silently ignore lock headers; trust the lock only once the server reports it back."""
        wanted = retain_until - dt.timedelta(seconds=1)  # servers keep whole seconds
        info = self.head(stored.key, stored.version_id)
        if info.lock_mode == "COMPLIANCE" and info.retain_until is not None:
            if info.retain_until >= wanted:
                return
            if info.retain_until >= dt.datetime.now(dt.UTC):
                # An idempotent retry may ask for a later date than the first attempt set: extend (allowed).
                try:
                    self.client.put_object_retention(
                        Bucket=self.bucket,
                        Key=stored.key,
                        VersionId=stored.version_id,
                        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": retain_until},
                    )
                except (ClientError, BotoCoreError) as exc:
                    raise_storage_error(exc, f"extend retention of {self.bucket}/{stored.key}")
                info = self.head(stored.key, stored.version_id)
                if info.retain_until is not None and info.retain_until >= wanted:
                    return
        raise StorageError(
            f"{self.bucket}/{stored.key} version {stored.version_id} is not locked as asked: "
            f"mode {info.lock_mode}, retain until {info.retain_until} (asked COMPLIANCE until {retain_until})"
        )

    def head(self, key: str, version_id: str | None) -> ObjectInfo:
        """Metadata of a version (the current one when ``version_id`` is None), with its stored checksum."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "ChecksumMode": "ENABLED"}
        if version_id is not None:
            kwargs["VersionId"] = version_id
        try:
            r = self.client.head_object(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise_storage_error(exc, f"head {self.bucket}/{key}@{version_id}")
        return ObjectInfo(
            version_id=r.get("VersionId") or "null",
            size=r["ContentLength"],
            sha256_hex=b64_to_hex(r.get("ChecksumSHA256")),
            lock_mode=r.get("ObjectLockMode"),
            retain_until=r.get("ObjectLockRetainUntilDate"),
            etag=r.get("ETag", "").strip('"'),
            legal_hold=r.get("ObjectLockLegalHoldStatus") == "ON",
        )

    def read(self, key: str, version_id: str) -> bytes:
        """The version's bytes, checked against the SHA-256 stored at put time.

        :class:`ChecksumMismatch` is raised only on proof (the bytes hash differently). A 5xx is
        :class:`StorageUnavailable`: SeaweedFS answers 500 both for a damaged needle (volume CRC; HEAD still
        answers 200) and, seen here, for seconds after a restart; the message says whether HEAD succeeds,
        and a 500 that persists while HEAD succeeds should be treated as possible corruption.
        """
        return b"".join(self.iter_read(key, version_id, 1024 * 1024))

    def iter_read(self, key: str, version_id: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """Stream the version; the checksum verdict comes after the last chunk, so abort on an exception."""
        _, chunks = self.open_read(key, version_id, chunk_size)
        yield from chunks

    def open_read(self, key: str, version_id: str, chunk_size: int = 1024 * 1024) -> tuple[ObjectInfo, Iterator[bytes]]:
        """GET the version: its metadata (lock, retention, stored checksum, all from the GET's own headers, so no
        HEAD is needed) and its checked chunks. The iterator raises :class:`ChecksumMismatch` after the last
        chunk when the bytes received do not hash to the stored checksum or length."""
        what = f"read {self.bucket}/{key}@{version_id}"
        try:
            r = self.client.get_object(Bucket=self.bucket, Key=key, VersionId=version_id, ChecksumMode="ENABLED")
        except (ClientError, BotoCoreError) as exc:
            error = storage_error(exc, what)
            if isinstance(error, StorageUnavailable) and isinstance(exc, ClientError):
                error = self._classify_read_failure(key, version_id, error)
            raise error from exc
        info = ObjectInfo(
            version_id=r.get("VersionId") or version_id,
            size=r["ContentLength"],
            sha256_hex=b64_to_hex(r.get("ChecksumSHA256")),
            lock_mode=r.get("ObjectLockMode"),
            retain_until=r.get("ObjectLockRetainUntilDate"),
            etag=r.get("ETag", "").strip('"'),
            legal_hold=r.get("ObjectLockLegalHoldStatus") == "ON",
        )
        return info, self._chunks(r, info, what, chunk_size)

    @staticmethod
    def _chunks(r: Any, info: ObjectInfo, what: str, chunk_size: int) -> Iterator[bytes]:
        body = r["Body"]
        hasher = hashlib.sha256()
        size = 0
        try:
            for chunk in body.iter_chunks(chunk_size):
                hasher.update(chunk)
                size += len(chunk)
                yield chunk
        except (ClientError, BotoCoreError) as exc:
            raise_storage_error(exc, what)
        finally:
            body.close()
        if info.sha256_hex is not None and hasher.hexdigest() != info.sha256_hex:
            raise ChecksumMismatch(f"{what}: received bytes hash to {hasher.hexdigest()}, stored {info.sha256_hex}")
        if size != info.size:
            raise ChecksumMismatch(f"{what}: received {size} bytes, expected {info.size}")

    def _classify_read_failure(self, key: str, version_id: str, error: StorageError) -> StorageError:
        try:
            self.head(key, version_id)
        except StorageError:
            return error
        return StorageUnavailable(f"{error} (HEAD succeeds: if this persists, the stored bytes may be damaged)")

    def presign_get(self, key: str, version_id: str, expires_in: int, public_endpoint: str | None = None) -> str:
        """A GET URL for exactly this version, signed for ``public_endpoint`` when clients reach S3 there."""
        client = self.client if not public_endpoint else self._presigner(public_endpoint)
        return client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key, "VersionId": version_id},
            ExpiresIn=expires_in,
        )

    def _presigner(self, endpoint: str) -> S3Client:
        # The host is part of the signature: re-pointing a signed URL would break it, so sign for the host.
        if endpoint not in self._presigners:
            params = client_params(self.client)
            if params is None:
                raise ValueError("presigning for a public endpoint needs a client made by make_s3_client")
            access_key, secret_key, region = params
            self._presigners[endpoint] = make_s3_client(endpoint, access_key, secret_key, region)
        return self._presigners[endpoint]

    def extend_retention(self, key: str, version_id: str, retain_until: dt.datetime) -> None:
        """Lengthen the version's COMPLIANCE retention; a shorter date is refused by the server (403), as it must."""
        try:
            self.client.put_object_retention(
                Bucket=self.bucket,
                Key=key,
                VersionId=version_id,
                Retention={"Mode": "COMPLIANCE", "RetainUntilDate": retain_until},
            )
        except (ClientError, BotoCoreError) as exc:
            raise_storage_error(exc, f"extend retention of {self.bucket}/{key}@{version_id}")
        info = self.head(key, version_id)
        if info.retain_until is None or info.retain_until < retain_until - dt.timedelta(seconds=1):
            raise StorageError(
                f"{self.bucket}/{key}@{version_id} retains until {info.retain_until}, not {retain_until}"
            )

    def set_legal_hold(self, key: str, version_id: str, on: bool) -> None:
        """Set or clear the version's legal hold, then read it back: a store that ignores it must not pass."""
        try:
            self.client.put_object_legal_hold(
                Bucket=self.bucket, Key=key, VersionId=version_id, LegalHold={"Status": "ON" if on else "OFF"}
            )
        except (ClientError, BotoCoreError) as exc:
            raise_storage_error(exc, f"legal hold of {self.bucket}/{key}@{version_id}")
        if self.legal_hold(key, version_id) != on:
            raise StorageError(f"{self.bucket}/{key}@{version_id}: the store did not keep the legal hold {on}")

    def legal_hold(self, key: str, version_id: str) -> bool:
        """Whether the version is under legal hold (a store that never had one set may answer 404: not held)."""
        try:
            r = self.client.get_object_legal_hold(Bucket=self.bucket, Key=key, VersionId=version_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchObjectLockConfiguration", "NoSuchObjectLegalHold"):
                return False
            raise_storage_error(exc, f"legal hold of {self.bucket}/{key}@{version_id}")
        except BotoCoreError as exc:
            raise_storage_error(exc, f"legal hold of {self.bucket}/{key}@{version_id}")
        return r.get("LegalHold", {}).get("Status") == "ON"

    def delete_version(self, key: str, version_id: str) -> None:
        """Remove one version (a locked or held version refuses, as it must; disposal relies on that)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key, VersionId=version_id)
        except (ClientError, BotoCoreError) as exc:
            raise_storage_error(exc, f"delete {self.bucket}/{key}@{version_id}")

    def list_all_versions(self, prefix: str) -> Iterator[tuple[str, str]]:
        """(key, version id) of every version under ``prefix``, delete markers excluded, one bulk listing."""
        try:
            for page in self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix):
                for v in page.get("Versions", []):
                    yield v["Key"], v["VersionId"]
        except (ClientError, BotoCoreError) as exc:
            raise_storage_error(exc, f"list versions {self.bucket}/{prefix}")

    def list_entries(self, prefix: str) -> Iterator[VersionEntry]:
        """Every version *and* delete marker under ``prefix`` in key order (newest first within a key), from one
        paginated listing: what an auditor needs to see that nothing sits beside a recorded version."""
        try:
            for page in self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix):
                entries = [
                    VersionEntry(
                        v["Key"], v["VersionId"], False, bool(v.get("IsLatest")), v.get("LastModified"), v.get("Size")
                    )
                    for v in page.get("Versions", [])
                ] + [
                    VersionEntry(m["Key"], m["VersionId"], True, bool(m.get("IsLatest")), m.get("LastModified"))
                    for m in page.get("DeleteMarkers", [])
                ]
                entries.sort(key=lambda e: e.key)
                yield from entries
        except (ClientError, BotoCoreError) as exc:
            raise_storage_error(exc, f"list versions {self.bucket}/{prefix}")

    def child_prefixes(self, prefix: str) -> list[str]:
        """The "folders" directly under ``prefix`` (S3's common prefixes with delimiter ``/``), in key order."""
        found: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                found += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        except (ClientError, BotoCoreError) as exc:
            raise_storage_error(exc, f"list prefixes {self.bucket}/{prefix}")
        return sorted(found)

    def list_versions(self, key: str) -> list[str]:
        """Version ids of ``key`` (newest first), delete markers excluded."""
        versions: list[str] = []
        try:
            for page in self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=key):
                versions += [v["VersionId"] for v in page.get("Versions", []) if v.get("Key") == key]
        except (ClientError, BotoCoreError) as exc:
            raise_storage_error(exc, f"list versions {self.bucket}/{key}")
        return versions
