"""Custody counters from the ledger: an event counts once its transaction commits, and never if it rolls back.

Every custody change appends a ledger event in its own transaction (``compliance.ledger.events``), so one hook
on the session counts them all, by type, whatever front door (API, CLI, reconciler) made them: no counter is
scattered through the services, and a change that rolled back is not counted. Transfers, when their events
land, appear in ``evault_ledger_events_total`` by type with no change here.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from compliance.ledger.event_catalogue import COPY_ISSUED, RELEASED, VAULTED_IN
from storage.models import Event
from vault.metrics.instruments import COPIES, LEDGER_EVENTS, RELEASES, VAULT_INS, VAULTED_BYTES

PENDING = "evault.metrics.pending_events"


def _vaulted_bytes(entry: bytes) -> int:
    """The sizes of a vault-in's documents, as its entry records them."""
    documents = json.loads(entry).get("data", {}).get("documents", [])
    return sum(int(doc.get("size", 0)) for doc in documents)


def _collect(session: Session, _flush_context: Any) -> None:
    """After a flush, remember the events it wrote (``session.new`` still lists them here)."""
    new = [(obj.event_type, obj.entry) for obj in session.new if isinstance(obj, Event)]
    if new:
        session.info.setdefault(PENDING, []).extend(new)


def _count(session: Session) -> None:
    for event_type, entry in session.info.pop(PENDING, []):
        LEDGER_EVENTS.labels(event_type).inc()
        if event_type == VAULTED_IN.name:
            VAULT_INS.inc()
            VAULTED_BYTES.inc(_vaulted_bytes(entry))
        elif event_type == COPY_ISSUED.name:
            COPIES.inc()
        elif event_type == RELEASED.name:
            RELEASES.inc()


def _forget(session: Session) -> None:
    session.info.pop(PENDING, None)


def install() -> None:
    """Listen on every session of this process (once; idempotent)."""
    if not event.contains(Session, "after_commit", _count):
        event.listen(Session, "after_flush", _collect)
        event.listen(Session, "after_commit", _count)
        event.listen(Session, "after_rollback", _forget)
