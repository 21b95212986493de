"""Handing out the vault's contents by short-lived presigned URLs, each issuance on the record.

The authoritative copy goes only to an envelope that is still vaulted (after vault-out the answer is 409
``Vault.Released``). Copies are made fresh per request: stamped on every page, stored in the copies bucket
apart from the originals, registered with their own id and hash, and never byte-identical to the source. The
mark is checked once, here (in the stamper's child, ``compliance.conditions.mark_check``), and the register row
and the ``vault.copy_issued`` entry say when; a copy whose mark fails is never stored or handed out.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col

from compliance.conditions.copy_mark import CopyMark
from compliance.errors import Conflict, EvaultError, NotFound, Unavailable
from compliance.ledger.event_catalogue import COPY_ISSUED, RETRIEVAL_ISSUED
from compliance.ledger.events import Actor, append_event
from storage.errors import ChecksumMismatch, StorageError
from storage.ids import iso, new_id, utcnow
from storage.keys import copy_key
from storage.models import CopyClaim, CopyRecord, Envelope, VaultedDocument, VaultRecord
from vault.custody import Custody
from vault.envelopes import get_envelope, lock_envelope, vault_record, vaulted_documents
from vault.slot_leases import stamping_slot
from vault.stamp_worker import stamp_for_copy
from vault.transfers import check_no_open_transfer

log = logging.getLogger("evault.retrieval")


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


def _vaulted(session: Session, org_id: str, envelope_id: str) -> tuple[Envelope, VaultRecord, list[VaultedDocument]]:
    """The envelope, locked, with its record and documents: what is served is what the record says now."""
    envelope = lock_envelope(session, org_id, envelope_id)
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
    custody: Custody, actor: Actor, envelope_id: str, document_id: str | None = None
) -> list[IssuedUrl]:
    """Check "not released" and record the issuance in one locked transaction, so a vault-out cannot slip
    between them; presigning is local computation, so nothing slow happens under the lock."""
    expiry = custody.policy.url_expiry_seconds
    with custody.db.session() as session:
        envelope, record, documents = _vaulted(session, actor.org_id, envelope_id)
        if record.released_at is not None:
            raise Conflict(
                "Vault.Released",
                "the authoritative copy was released by vault-out and is no longer served",
                released_at=iso(record.released_at),
                reason=record.release_reason,
            )
        now = utcnow()
        check_no_open_transfer(session, envelope, now)  # escrow: marked copies only while a transfer is open
        expires_at = iso(now + timedelta(seconds=expiry))
        issued = [
            IssuedUrl(
                doc.id,
                custody.authoritative.presign_get(doc.s3_key, doc.s3_version_id, expiry, custody.public_s3_endpoint),
                doc.sha256,
                doc.s3_version_id,
                expires_at,
                {"authoritative": True, "authoritative_copy_id": record.id, "filename": doc.filename},
            )
            for doc in _select(documents, document_id)
        ]
        append_event(
            session,
            actor=actor,
            envelope_id=envelope.id,
            event_type=RETRIEVAL_ISSUED,
            occurred_at=now,
            data={"documents": [url.id for url in issued], "expires_at": expires_at},
        )
    return issued


def read_verified(custody: Custody, doc: VaultedDocument) -> bytes:
    try:
        data = custody.authoritative.read(doc.s3_key, doc.s3_version_id)
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


def end_copy_claim(session: Session, copy_id: str) -> bool:
    """Delete the copy's claim; whether it was still there (the register, the request's own clean-up and the
    reconciler each end it, and only the first one finds it)."""
    return bool(session.exec(delete(CopyClaim).where(col(CopyClaim.copy_id) == copy_id)).rowcount == 1)


def _drop_claim(custody: Custody, copy_id: str) -> None:
    """After a failed register, its object removed: the claim goes too (if the database refuses, the reconciler
    takes it)."""
    try:
        with custody.db.session() as session:
            end_copy_claim(session, copy_id)
    except SQLAlchemyError as exc:
        log.warning("copy claim %s left to the reconciler: %s", copy_id, exc)


def register_copy(
    custody: Custody, actor: Actor, record: VaultRecord, copy: CopyRecord, *, certified: bool = False
) -> None:
    """Register the stored copy and its event under the envelope's lock, ending its claim; on failure remove the
    object again (the copies bucket is not locked), so no copy exists that the register does not name. A process
    killed before either leaves the claim, which names the object for the reconciler."""
    try:
        with custody.db.session() as session:
            lock_envelope(session, actor.org_id, copy.envelope_id)
            if not end_copy_claim(session, copy.id):  # past the grace, the reconciler took it and deletes the object
                raise Unavailable("Storage.Unavailable", "the copy was stored after its claim expired; retry")
            session.add(copy)
            session.flush()
            append_event(
                session,
                actor=actor,
                envelope_id=copy.envelope_id,
                event_type=COPY_ISSUED,
                occurred_at=copy.issued_at,
                data={
                    "copy_id": copy.id,
                    "document_id": copy.document_id,
                    "sha256": copy.sha256,
                    "source_sha256": copy.source_sha256,
                    "authoritative_copy_id": record.id,
                    "mark_verified_at": iso(copy.mark_verified_at) if copy.mark_verified_at else None,
                    **({"certified": True} if certified else {}),
                },
            )
    except BaseException:
        try:
            custody.copies.delete_version(copy.s3_key, copy.s3_version_id)
        except StorageError as exc:  # its claim stays: the reconciler deletes it after the grace period
            log.warning("unregistered copy %s left in %s: %s", copy.id, copy.s3_key, exc)
        else:
            _drop_claim(custody, copy.id)
        raise


def store_copy(
    custody: Custody,
    actor: Actor,
    record: VaultRecord,
    envelope: Envelope,
    doc: VaultedDocument,
    copy_id: str,
    pdf: bytes,
    issued_at: datetime,
    verified_at: datetime,
    *,
    certified: bool = False,
) -> CopyRecord:
    """Claim, store a marked copy (its mark checked at ``verified_at``) and register it with its event."""
    digest = hashlib.sha256(pdf).hexdigest()
    if digest == doc.sha256:
        raise IntegrityFailure("Vault.CopyNotMarked", "a copy came out identical to the authoritative copy")
    key = copy_key(envelope.org_id, envelope.id, copy_id)
    with custody.db.session() as session:
        session.add(
            CopyClaim(copy_id=copy_id, org_id=envelope.org_id, envelope_id=envelope.id, s3_key=key, claimed_at=utcnow())
        )
    try:
        stored = custody.copies.put_plain(key, pdf, "application/pdf")
    except StorageError as exc:  # a put that failed may still have stored: the claim stays for the reconciler
        raise Unavailable("Storage.Unavailable", "object storage did not accept the copy; retry") from exc
    copy = CopyRecord(
        id=copy_id,
        org_id=envelope.org_id,
        envelope_id=envelope.id,
        document_id=doc.id,
        source_sha256=doc.sha256,
        sha256=digest,
        size=len(pdf),
        s3_bucket=custody.copies.bucket,
        s3_key=stored.key,
        s3_version_id=stored.version_id,
        issued_at=issued_at,
        issued_by=actor.key_id or "",
        mark_verified_at=verified_at,
    )
    register_copy(custody, actor, record, copy, certified=certified)
    return copy


def issue_copies(custody: Custody, actor: Actor, envelope_id: str, document_id: str | None = None) -> list[IssuedUrl]:
    """Make, store and register one marked copy per selected document, then hand out its URL.

    Reading and stamping are slow, so they happen outside any transaction; the register entry and its
    event commit together under the envelope's lock.
    """
    with custody.db.read_session() as session:
        envelope = get_envelope(session, actor.org_id, envelope_id)
        record = vault_record(session, envelope.id)
        if record is None:
            raise Conflict("Vault.NotVaulted", "this envelope has no authoritative copy yet", envelope_id=envelope_id)
        documents = _select(vaulted_documents(session, record.id), document_id)
    expiry = custody.policy.url_expiry_seconds
    issued: list[IssuedUrl] = []
    for doc in documents:
        copy_id = new_id("cp")
        now = utcnow()
        mark = CopyMark(copy_id, envelope.id, doc.sha256, now)
        # Only a copy whose mark passed its check (in the stamper's child) comes back; that is what is recorded.
        source = read_verified(custody, doc)
        with stamping_slot(custody.db, custody.pdf, envelope.org_id):  # the org's share across processes
            stamped = stamp_for_copy(custody.pdf, envelope.org_id, source, mark)
        copy = store_copy(custody, actor, record, envelope, doc, copy_id, stamped, now, utcnow())
        issued.append(
            IssuedUrl(
                copy_id,
                custody.copies.presign_get(copy.s3_key, copy.s3_version_id, expiry, custody.public_s3_endpoint),
                copy.sha256,
                copy.s3_version_id,
                iso(now + timedelta(seconds=expiry)),
                {"authoritative": False, "document_id": doc.id, "source_sha256": doc.sha256},
            )
        )
    return issued
