"""Deadlines: envelopes and open transfers past their ``expires_at``, staged uploads past their TTL, stale
idempotency keys.

Applied two ways so that nobody sees a deadline ignored: a periodic sweep in the runtime's background, and on
the spot when a request reads or changes the envelope (:func:`settle`). Both lock the envelope and re-check,
so they are safe to run in several processes at once. An envelope with a vault-in claim in flight is not
expired: its vault-in started before the deadline and finishes (or the reconciler releases the claim).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import delete
from sqlmodel import Session, col, select

from compliance.ledger.event_catalogue import ENVELOPE_EXPIRED
from compliance.ledger.events import Actor, append_event
from storage.errors import StorageError
from storage.ids import iso, utcnow
from storage.models import Envelope, IdempotencyRecord, RateCounter, StagedDocument, VaultClaim
from vault.custody import Custody
from vault.envelopes import get_envelope, lock_envelope
from vault.lifecycle import OPEN, expiry_due, transition
from vault.transfers import expire_due_transfers

log = logging.getLogger("evault.expiry")


def expire_locked(session: Session, envelope: Envelope, now: datetime) -> bool:
    """Expire the envelope the caller holds locked, if due; the change and its event share the transaction."""
    if not expiry_due(envelope, now) or session.get(VaultClaim, envelope.id) is not None:
        return False
    deadline = envelope.expires_at
    transition(envelope, now, status="expired")
    session.add(envelope)
    append_event(
        session,
        actor=Actor(envelope.org_id),
        envelope_id=envelope.id,
        event_type=ENVELOPE_EXPIRED,
        occurred_at=now,
        data={"expires_at": iso(deadline) if deadline else None},
    )
    return True


def settle(custody: Custody, org_id: str, envelope_id: str) -> None:
    """Apply a due expiry now; a read-only look first, so the common case takes no write lock."""
    now = utcnow()
    with custody.db.read_session() as session:
        due = expiry_due(get_envelope(session, org_id, envelope_id), now)
    if due:
        with custody.db.session() as session:
            expire_locked(session, lock_envelope(session, org_id, envelope_id), now)


def expire_due(custody: Custody, org_id: str | None = None) -> list[str]:
    """Expire every due envelope (of one organisation, or all); return their ids."""
    now = utcnow()
    with custody.db.read_session() as session:
        query = select(Envelope.id, Envelope.org_id).where(
            col(Envelope.expires_at) <= now,
            col(Envelope.status).in_(OPEN),
            Envelope.vault_state == "not_vaulted",
        )
        if org_id is not None:
            query = query.where(Envelope.org_id == org_id)
        due = list(session.exec(query))
    expired = []
    for envelope_id, owner in due:
        with custody.db.session() as session:
            if expire_locked(session, lock_envelope(session, owner, envelope_id), now):
                expired.append(envelope_id)
    return expired


def _drop_staged(custody: Custody, doc: StagedDocument) -> None:
    try:
        custody.staging_store.delete_version(doc.s3_key, doc.s3_version_id)
    except StorageError as exc:
        log.warning("staged object %s not deleted now, will retry: %s", doc.s3_key, exc)
        return
    with custody.db.session() as session:
        row = session.get(StagedDocument, doc.id)
        if row is not None:
            session.delete(row)


def sweep_staged(custody: Custody) -> int:
    """Delete staged uploads that expired, or whose envelope no longer waits for them (vaulted, voided...)."""
    now = utcnow()
    with custody.db.read_session() as session:
        rows = list(
            session.exec(
                select(StagedDocument)
                .join(Envelope, col(Envelope.id) == col(StagedDocument.envelope_id))
                .where(
                    (col(StagedDocument.expires_at) <= now)
                    | (Envelope.status != "awaiting_upload")
                    | (Envelope.vault_state != "not_vaulted")
                )
            )
        )
    for doc in rows:
        _drop_staged(custody, doc)
    return len(rows)


@dataclass(frozen=True)
class Swept:
    expired: list[str]
    staged_deleted: int
    idempotency_deleted: int
    counters_deleted: int
    transfers_expired: list[str] = field(default_factory=list)


def sweep_deadlines(custody: Custody, rate_window_seconds: int) -> Swept:
    """Expire envelopes and open transfers past their deadline; drop stale idempotency keys and rate counters."""
    expired = expire_due(custody)
    transfers = expire_due_transfers(custody)
    now = utcnow()
    with custody.db.session() as session:
        keys = session.exec(delete(IdempotencyRecord).where(col(IdempotencyRecord.expires_at) <= now))
        stale = int(now.timestamp()) - 2 * rate_window_seconds
        windowed_past = col(RateCounter.tat).is_(None) & (col(RateCounter.window_start) < stale)
        paced_idle = col(RateCounter.tat) < now.timestamp()  # on schedule again: the same as no row
        counters = session.exec(delete(RateCounter).where(windowed_past | paced_idle))
    return Swept(expired, 0, keys.rowcount, counters.rowcount, transfers)


def sweep(custody: Custody, rate_window_seconds: int) -> Swept:
    """One pass of every deadline (the runtime runs its two halves under their own leases)."""
    swept = sweep_deadlines(custody, rate_window_seconds)
    return replace(swept, staged_deleted=sweep_staged(custody))
