"""Handing out the vault's contents by short-lived presigned URLs, each issuance on the record.

The authoritative copy goes only to an envelope that is still vaulted (after vault-out the answer is 409
``Vault.Released``). Copies are made fresh per request: stamped on every page, stored in the copies bucket
apart from the originals, registered with their own id and hash, and never byte-identical to the source.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from compliance.copy_mark import CopyMark
from compliance.errors import Conflict, EvaultError, NotFound, Unavailable
from compliance.ledger.events import Actor, append_event
from storage.errors import ChecksumMismatch, StorageError
from storage.ids import iso, new_id, utcnow
from storage.keys import copy_key
from storage.models import CopyRecord, Envelope, VaultedDocument, VaultRecord
from vault.envelopes import get_envelope, vault_record, vaulted_documents
from vault.runtime import Runtime
from vault.stamp_worker import stamp_for_copy


class IntegrityFailure(EvaultError):
    """What storage returned does not match the record: never hand it out, report it."""

    category = "integrity"


@dataclass(frozen=True)
class IssuedUrl:
    id: str
    url: str
    sha256: str
    version_id: str
    expires_at: str
    extra: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "sha256": self.sha256,
            "version_id": self.version_id,
            "expires_at": self.expires_at,
            **self.extra,
        }


def _vaulted(runtime: Runtime, org_id: str, envelope_id: str) -> tuple[Envelope, VaultRecord, list[VaultedDocument]]:
    with runtime.db.read_session() as session:
        envelope = get_envelope(session, org_id, envelope_id)
        record = vault_record(session, envelope.id)
        if record is None:
            raise Conflict("Vault.NotVaulted", "this envelope has no authoritative copy yet", envelope_id=envelope_id)
        return envelope, record, vaulted_documents(session, record.id)


def _select(documents: list[VaultedDocument], document_id: str | None) -> list[VaultedDocument]:
    if document_id is None:
        return documents
    chosen = [doc for doc in documents if doc.id == document_id]
    if not chosen:
        raise NotFound("Document.NotFound", "no such document in this envelope", document_id=document_id)
    return chosen


def authoritative_urls(
    runtime: Runtime, actor: Actor, envelope_id: str, document_id: str | None = None
) -> list[IssuedUrl]:
    envelope, record, documents = _vaulted(runtime, actor.org_id, envelope_id)
    if record.released_at is not None:
        raise Conflict(
            "Vault.Released",
            "the authoritative copy was released by vault-out and is no longer served",
            released_at=iso(record.released_at),
            reason=record.release_reason,
        )
    expiry = runtime.settings.vault.url_expiry_seconds
    expires_at = iso(utcnow() + timedelta(seconds=expiry))
    issued = [
        IssuedUrl(
            doc.id,
            runtime.authoritative.presign_get(doc.s3_key, doc.s3_version_id, expiry, runtime.public_s3_endpoint),
            doc.sha256,
            doc.s3_version_id,
            expires_at,
            {"authoritative": True, "authoritative_copy_id": record.id, "filename": doc.filename},
        )
        for doc in _select(documents, document_id)
    ]
    with runtime.db.session() as session:
        append_event(
            session,
            actor=actor,
            envelope_id=envelope.id,
            event_type="vault.retrieval_issued",
            occurred_at=utcnow(),
            data={"documents": [url.id for url in issued], "expires_at": expires_at},
        )
    return issued


def _read_verified(runtime: Runtime, doc: VaultedDocument) -> bytes:
    try:
        data = runtime.authoritative.read(doc.s3_key, doc.s3_version_id)
    except ChecksumMismatch as exc:
        raise IntegrityFailure(
            "Vault.IntegrityFailure", "stored bytes fail their checksum", document_id=doc.id
        ) from exc
    except StorageError as exc:
        raise Unavailable("Storage.Unavailable", "object storage could not be read; retry") from exc
    if hashlib.sha256(data).hexdigest() != doc.sha256:
        raise IntegrityFailure(
            "Vault.IntegrityFailure", "stored bytes differ from the vaulted hash", document_id=doc.id
        )
    return data


def issue_copies(runtime: Runtime, actor: Actor, envelope_id: str, document_id: str | None = None) -> list[IssuedUrl]:
    """Make, store and register one marked copy per selected document, then hand out its URL."""
    envelope, record, documents = _vaulted(runtime, actor.org_id, envelope_id)
    expiry = runtime.settings.vault.url_expiry_seconds
    issued: list[IssuedUrl] = []
    for doc in _select(documents, document_id):
        copy_id = new_id("cp")
        now = utcnow()
        mark = CopyMark(copy_id, envelope.id, doc.sha256, now)
        stamped = stamp_for_copy(runtime.settings.pdf, envelope.org_id, _read_verified(runtime, doc), mark)
        digest = hashlib.sha256(stamped).hexdigest()
        if digest == doc.sha256:
            raise IntegrityFailure("Vault.CopyNotMarked", "a copy came out identical to the authoritative copy")
        try:
            stored = runtime.copies.put_plain(
                copy_key(envelope.org_id, envelope.id, copy_id), stamped, "application/pdf"
            )
        except StorageError as exc:
            raise Unavailable("Storage.Unavailable", "object storage did not accept the copy; retry") from exc
        with runtime.db.session() as session:
            session.add(
                CopyRecord(
                    id=copy_id,
                    org_id=envelope.org_id,
                    envelope_id=envelope.id,
                    document_id=doc.id,
                    source_sha256=doc.sha256,
                    sha256=digest,
                    size=len(stamped),
                    s3_bucket=runtime.copies.bucket,
                    s3_key=stored.key,
                    s3_version_id=stored.version_id,
                    issued_at=now,
                    issued_by=actor.key_id or "",
                )
            )
            session.flush()
            append_event(
                session,
                actor=actor,
                envelope_id=envelope.id,
                event_type="vault.copy_issued",
                occurred_at=now,
                data={
                    "copy_id": copy_id,
                    "document_id": doc.id,
                    "sha256": digest,
                    "source_sha256": doc.sha256,
                    "authoritative_copy_id": record.id,
                },
            )
        issued.append(
            IssuedUrl(
                copy_id,
                runtime.copies.presign_get(stored.key, stored.version_id, expiry, runtime.public_s3_endpoint),
                digest,
                stored.version_id,
                iso(now + timedelta(seconds=expiry)),
                {"authoritative": False, "document_id": doc.id, "source_sha256": doc.sha256},
            )
        )
    return issued
