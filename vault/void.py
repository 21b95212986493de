"""Voiding an envelope: cancelled before anything was vaulted, for a stated reason, for good."""

from __future__ import annotations

from compliance.errors import Conflict, InvalidInput
from compliance.ledger.event_catalogue import ENVELOPE_VOIDED
from compliance.ledger.events import Actor, append_event
from storage.ids import utcnow
from storage.models import Envelope, VaultClaim
from vault.custody import Custody, OnCommit
from vault.envelopes import lock_envelope
from vault.expiry import settle
from vault.lifecycle import check_if_match, require_not_due, transition

MAX_REASON = 500


def void_envelope(
    custody: Custody,
    actor: Actor,
    envelope_id: str,
    reason: str,
    *,
    if_match: str | None = None,
    on_commit: OnCommit | None = None,
) -> Envelope:
    cleaned = reason.strip()
    if not cleaned or len(reason) > MAX_REASON or "\x00" in reason:
        raise InvalidInput("Envelope.InvalidReason", f"reason must be 1-{MAX_REASON} characters", field="reason")
    settle(custody, actor.org_id, envelope_id)
    now = utcnow()
    with custody.db.session() as session:
        envelope = lock_envelope(session, actor.org_id, envelope_id)
        check_if_match(envelope, if_match)
        require_not_due(envelope, now)
        if session.get(VaultClaim, envelope.id) is not None:
            raise Conflict("Vault.InProgress", "a vault-in of this envelope is in flight", envelope_id=envelope_id)
        transition(envelope, now, status="voided")
        session.add(envelope)
        append_event(
            session,
            actor=actor,
            envelope_id=envelope.id,
            event_type=ENVELOPE_VOIDED,
            occurred_at=now,
            data={"reason": cleaned},
        )
        if on_commit is not None:
            on_commit(session, envelope)
    return envelope
