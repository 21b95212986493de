"""The envelope's lifecycle: its states, the transitions between them, and its entity tag.

Two axes. ``status`` is where the envelope is in its flow; ``vault_state`` is what the vault holds for it:

    draft ──────────┬──> completed      (vault-in-signed from an e-sign draft without a ceremony)
    awaiting_upload ┤──> voided         (void, before vault-in)
                    └──> expired        (``expires_at`` passed before vault-in)
    draft ──> sent ─┬──> completed      (the e-sign ceremony: the last signature, sealed and vaulted in)
                    ├──> declined       (a signer declined: terminal, never vaulted)
                    ├──> voided
                    └──> expired

    not_vaulted ──> vaulted ──> released (vault-out)

Every service that changes either axis calls :func:`transition` on the envelope it
holds locked; an illegal move is 409 ``Envelope.InvalidTransition`` naming the current state. Each change bumps
``revision``, which is the envelope's ETag, so the tag changes exactly when the state does.
"""

from __future__ import annotations

from datetime import datetime

from compliance.errors import Conflict, PreconditionFailed
from storage.ids import as_utc
from storage.models import Envelope

STATUSES = ("draft", "sent", "awaiting_upload", "completed", "declined", "voided", "expired")
VAULT_STATES = ("not_vaulted", "vaulted", "released")
OPEN = frozenset({"draft", "sent", "awaiting_upload"})
_NEXT: dict[str, frozenset[str]] = {
    "draft": frozenset({"sent", "completed", "voided", "expired"}),
    "sent": frozenset({"completed", "declined", "voided", "expired"}),
    "awaiting_upload": frozenset({"completed", "voided", "expired"}),
    "completed": frozenset(),
    "declined": frozenset(),
    "voided": frozenset(),
    "expired": frozenset(),
}
_NEXT_VAULT: dict[str, frozenset[str]] = {
    "not_vaulted": frozenset({"vaulted"}),
    "vaulted": frozenset({"released"}),
    "released": frozenset(),
}


def initial_status(kind: str) -> str:
    """A paper envelope waits for its signed PDF; an e-sign envelope starts as a draft."""
    return "awaiting_upload" if kind == "paper" else "draft"


def can_transition(envelope: Envelope, to: str) -> bool:
    return to in _NEXT[envelope.status]


def touch(envelope: Envelope, now: datetime) -> None:
    """A change that keeps both states (a staged upload): the ETag still moves."""
    envelope.revision += 1
    envelope.updated_at = now


def _refuse(envelope: Envelope, requested: str) -> Conflict:
    return Conflict(
        "Envelope.InvalidTransition",
        f"an envelope that is {envelope.status} / {envelope.vault_state} cannot become {requested}",
        status=envelope.status,
        vault_state=envelope.vault_state,
        requested=requested,
    )


def transition(envelope: Envelope, now: datetime, *, status: str | None = None, vault_state: str | None = None) -> None:
    """Move ``status`` and/or ``vault_state`` or raise 409 naming where the envelope is; the caller holds its
    lock. Both checked before either changes; one revision per call."""
    if status is not None and not can_transition(envelope, status):
        raise _refuse(envelope, status)
    if vault_state is not None and vault_state not in _NEXT_VAULT[envelope.vault_state]:
        raise _refuse(envelope, vault_state)
    envelope.status = status or envelope.status
    envelope.vault_state = vault_state or envelope.vault_state
    touch(envelope, now)


def expiry_due(envelope: Envelope, now: datetime) -> bool:
    """Past its ``expires_at`` while still open and not vaulted."""
    return (
        envelope.expires_at is not None
        and as_utc(envelope.expires_at) <= now
        and envelope.status in OPEN
        and envelope.vault_state == "not_vaulted"
    )


def require_not_due(envelope: Envelope, now: datetime) -> None:
    """Inside a locked mutation: an envelope whose deadline passed is treated as expired."""
    if expiry_due(envelope, now):
        raise Conflict(
            "Envelope.InvalidTransition",
            "this envelope's expires_at has passed; it is expired",
            status="expired",
            vault_state=envelope.vault_state,
        )


def etag(envelope: Envelope) -> str:
    return f'"{envelope.id}.{envelope.revision}"'


def matches(header: str | None, tag: str) -> bool:
    """RFC 9110 list match (weak tags compare by their opaque part for If-None-Match); ``*`` matches."""
    if header is None:
        return False
    candidates = [item.strip().removeprefix("W/") for item in header.split(",")]
    return "*" in candidates or tag in candidates


def check_if_match(envelope: Envelope, if_match: str | None) -> None:
    """Optimistic concurrency: called after ``lock_envelope``, so the comparison is with the committed state."""
    if if_match is None:
        return
    tag = etag(envelope)
    candidates = [item.strip() for item in if_match.split(",")]
    if "*" not in candidates and tag not in candidates:
        raise PreconditionFailed(
            "Envelope.PreconditionFailed",
            "the envelope changed since you read it (If-Match does not match its ETag)",
            etag=tag,
            status=envelope.status,
            vault_state=envelope.vault_state,
        )
