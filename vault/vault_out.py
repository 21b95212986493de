"""Vault-out: the authoritative copy leaves this vault's control, and the record says so forever after.

The object itself stays under its compliance-mode retention (it cannot be deleted anyway); what changes is
that this vault no longer serves it as authoritative.
"""

from __future__ import annotations

from typing import Any

from compliance.errors import Conflict, InvalidInput
from compliance.ledger.event_catalogue import RELEASED
from compliance.ledger.events import Actor, append_event
from storage.ids import iso, utcnow
from storage.models import VaultRecord
from vault.custody import Custody, OnCommit
from vault.envelopes import lock_envelope, require_control, vault_record
from vault.field_limits import check_release
from vault.lifecycle import check_if_match, transition
from vault.transfers import check_no_open_transfer

REASONS = ("transfer", "paper_out", "payoff", "other")


def _release_details(reason: str, transferee: dict[str, Any] | None, note: str | None) -> dict[str, Any]:
    if reason not in REASONS:
        raise InvalidInput("VaultOut.InvalidReason", f"reason must be one of {REASONS}", field="reason")
    check_release(transferee, note)
    if reason == "transfer" and not (
        transferee and isinstance(transferee.get("vault_id"), str) and transferee["vault_id"].strip()
    ):
        raise InvalidInput(
            "VaultOut.TransfereeRequired",
            "a transfer names the receiving vault: transferee.vault_id",
            field="transferee.vault_id",
        )
    if reason == "other" and not (note and note.strip()):
        raise InvalidInput("VaultOut.NoteRequired", "reason 'other' needs a note saying why", field="note")
    details: dict[str, Any] = {}
    if transferee:
        details["transferee"] = transferee
    if note:
        details["note"] = note
    return details


def vault_out(
    custody: Custody,
    actor: Actor,
    envelope_id: str,
    reason: str,
    transferee: dict[str, Any] | None = None,
    note: str | None = None,
    *,
    if_match: str | None = None,
    on_commit: OnCommit | None = None,
) -> VaultRecord:
    details = _release_details(reason, transferee, note)
    now = utcnow()
    with custody.db.session() as session:
        # Locked first: of two concurrent vault-outs the second waits here, then sees the first's release.
        envelope = lock_envelope(session, actor.org_id, envelope_id)
        require_control(envelope, actor.org_id)
        check_if_match(envelope, if_match)
        record = vault_record(session, envelope.id)
        if record is None:
            raise Conflict("Vault.NotVaulted", "this envelope has no authoritative copy to release")
        if record.released_at is not None:
            raise Conflict(
                "Vault.AlreadyReleased",
                "the authoritative copy was already released",
                released_at=iso(record.released_at),
            )
        check_no_open_transfer(session, envelope, now)  # escrow: not while a transfer is open
        record.released_at = now
        record.released_by = actor.key_id
        record.release_reason = reason
        record.release_details = details
        transition(envelope, now, vault_state="released")
        session.add(record)
        session.add(envelope)
        append_event(
            session,
            actor=actor,
            envelope_id=envelope.id,
            event_type=RELEASED,
            occurred_at=now,
            data={"authoritative_copy_id": record.id, "reason": reason, **details},
        )
        if on_commit is not None:
            on_commit(session, envelope)
    return record
