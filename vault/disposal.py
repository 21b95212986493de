"""Disposal: authoritative copies whose retention has passed and that are not held, deleted where the store allows.

``evault dispose --due`` lists them; ``--confirm`` deletes each one's object versions under its envelope's lock
and records ``vault.disposed`` with the documents' hashes, so the log keeps the proof of what existed. A version
the store refuses to delete (still locked, or held) leaves the record as it was: nothing is recorded as
disposed that still exists, and a later run retries (a version already gone counts as deleted).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select

from compliance.ledger.event_catalogue import DISPOSED
from compliance.ledger.events import Actor, append_event
from storage.errors import ObjectMissing, StorageError
from storage.ids import as_utc, iso, utcnow
from storage.models import VaultRecord
from vault.custody import Custody
from vault.envelopes import lock_envelope, vault_record, vaulted_documents


@dataclass(frozen=True)
class Due:
    org_id: str
    envelope_id: str
    authoritative_copy_id: str
    retain_until: datetime


@dataclass(frozen=True)
class Outcome:
    due: Due
    disposed: bool
    refused: list[str]  # "key@version: why" of each version the store kept


def _is_due(record: VaultRecord, now: datetime) -> bool:
    return record.disposed_at is None and record.legal_hold_reason is None and as_utc(record.retain_until) <= now


def due(custody: Custody, now: datetime | None = None) -> list[Due]:
    """Records past their retention, not held and not yet disposed, oldest retention first."""
    now = now or utcnow()
    with custody.db.read_session() as session:
        rows = session.exec(
            select(VaultRecord)
            .where(
                col(VaultRecord.retain_until) <= now,
                col(VaultRecord.legal_hold_reason).is_(None),
                col(VaultRecord.disposed_at).is_(None),
            )
            .order_by(col(VaultRecord.retain_until), col(VaultRecord.id))
        ).all()
        return [Due(r.org_id, r.envelope_id, r.id, as_utc(r.retain_until)) for r in rows]


def dispose(custody: Custody, item: Due) -> Outcome:
    """Delete one due record's object versions and record the disposal, if the store let every one go."""
    now = utcnow()
    with custody.db.session() as session:
        envelope = lock_envelope(session, item.org_id, item.envelope_id)
        record = vault_record(session, envelope.id)
        if record is None or not _is_due(record, now):  # held or lengthened since it was listed
            return Outcome(item, False, [])
        documents = vaulted_documents(session, record.id)
        refused = []
        for doc in documents:
            try:
                custody.authoritative.delete_version(doc.s3_key, doc.s3_version_id)
            except ObjectMissing:
                pass  # deleted by an earlier run that could not record the disposal
            except StorageError as exc:
                refused.append(f"{doc.s3_key}@{doc.s3_version_id}: {exc}")
        if refused:
            return Outcome(item, False, refused)
        record.disposed_at = now
        session.add(record)
        append_event(
            session,
            actor=Actor(record.org_id),
            envelope_id=envelope.id,
            event_type=DISPOSED,
            occurred_at=now,
            data={
                "authoritative_copy_id": record.id,
                "retain_until": iso(record.retain_until),
                "documents": [
                    {
                        "id": doc.id,
                        "sha256": doc.sha256,
                        "size": doc.size,
                        "key": doc.s3_key,
                        "version_id": doc.s3_version_id,
                    }
                    for doc in documents
                ],
            },
        )
    return Outcome(item, True, [])
