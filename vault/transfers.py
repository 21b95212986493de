"""Transfers of control and/or location of a vaulted record between organisations of this vault.

A small state machine (docs/transfers.md): the organisation in control initiates (``pending``); the receiver
accepts or rejects; the initiator may cancel while pending; ``expires_at`` passing expires it. With
``confirm_required`` an acceptance waits (``accepted``) for the initiator's confirmation. Control moves at
completion. Every step locks the envelope and then the transfer row and re-checks the state under the lock,
so of accept, reject, cancel and expiry exactly one wins; the loser gets 409 ``Transfer.NotPending``.

While a transfer is open the record is in escrow (:func:`check_no_open_transfer`): authoritative retrieval,
vault-out and another transfer are 409 ``Transfer.Pending``. Marked copies may still be issued.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from compliance.errors import Conflict, Forbidden, InvalidInput, NotFound
from compliance.headmap.sql_store import commit_head_map
from compliance.ledger.event_catalogue import (
    TRANSFER_ACCEPTED,
    TRANSFER_ARRIVED,
    TRANSFER_CANCELLED,
    TRANSFER_COMPLETED,
    TRANSFER_EXPIRED,
    TRANSFER_INITIATED,
    TRANSFER_RECORDED,
    TRANSFER_REJECTED,
)
from compliance.ledger.events import Actor, append_event, chain_head, chain_log
from storage.ids import as_utc, iso, new_id, utcnow
from storage.models import Envelope, Organisation, Transfer
from vault.custody import Custody
from vault.envelopes import lock_envelope, require_control, vault_record
from vault.field_limits import check_text
from vault.lifecycle import touch

TYPES = ("control", "location", "control_and_location")
OPEN = ("pending", "accepted")
STATUSES = ("pending", "accepted", "completed", "rejected", "cancelled", "expired")
TRANSFER_ID = re.compile(r"tr_[a-z0-9]{20}")
ORG_ID = re.compile(r"org_[a-z0-9]{20}")
MAX_TEXT = 1000

# Called inside the step's transaction with the transfer it changed: the API records its idempotent answer there.
OnTransfer = Callable[[Session, Transfer], None]


def _not_found(transfer_id: str) -> NotFound:
    return NotFound("Transfer.NotFound", "no such transfer", transfer_id=transfer_id)


def _text(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise InvalidInput("Request.FieldTooLong", f"{name} is at most {MAX_TEXT} characters", field=name)
    check_text(value, name)  # no control, bidi or line-separator characters, as every kept text
    return value.strip() or None


def open_transfer(session: Session, envelope_id: str) -> Transfer | None:
    return session.exec(
        select(Transfer).where(Transfer.envelope_id == envelope_id, col(Transfer.status).in_(OPEN))
    ).first()


def check_no_open_transfer(session: Session, envelope: Envelope, now: datetime) -> None:
    """Escrow: with the envelope locked, refuse while a transfer is open (one past its deadline expires now)."""
    transfer = open_transfer(session, envelope.id)
    if transfer is not None and not _expire_if_due(session, envelope, transfer, now):
        raise Conflict(
            "Transfer.Pending",
            "a transfer of this record is open: it is in escrow until the transfer completes or ends",
            transfer_id=transfer.id,
            status=transfer.status,
        )


def _data(transfer: Transfer, **extra: Any) -> dict[str, Any]:
    """What every entry of a transfer names: the transfer, its parties and its type."""
    return {
        "transfer_id": transfer.id,
        "from_org": transfer.from_org_id,
        "to_org": transfer.to_org_id,
        "type": transfer.type,
        **extra,
    }


def _expire_if_due(session: Session, envelope: Envelope, transfer: Transfer, now: datetime) -> bool:
    """Expire the open transfer the caller holds locked (with its envelope) if its deadline passed."""
    if transfer.status not in OPEN or transfer.expires_at is None or as_utc(transfer.expires_at) > now:
        return False
    transfer.status, transfer.closed_at = "expired", now
    session.add(transfer)
    append_event(  # keyless: the deadline, on behalf of the record's own organisation
        session,
        actor=Actor(envelope.org_id),
        envelope_id=envelope.id,
        event_type=TRANSFER_EXPIRED,
        occurred_at=now,
        data=_data(transfer),
    )
    return True


def _receiver(session: Session, to_org: Any, envelope: Envelope, kind: str) -> str:
    if not isinstance(to_org, str) or not ORG_ID.fullmatch(to_org) or session.get(Organisation, to_org) is None:
        raise InvalidInput(
            "Transfer.InvalidReceiver", "to_organisation is not an organisation of this vault", field="to_organisation"
        )
    moved = ([envelope.controller] if "control" in kind else []) + ([envelope.custodian] if "location" in kind else [])
    if to_org == envelope.controller or to_org in moved:
        raise InvalidInput(
            "Transfer.InvalidReceiver",
            "the receiver already holds what the transfer would move, or is the organisation in control",
            field="to_organisation",
        )
    return to_org


def _expiry(expires_at: datetime | None, now: datetime) -> datetime | None:
    if expires_at is not None and (expires_at.tzinfo is None or as_utc(expires_at) <= now):
        raise InvalidInput(
            "Transfer.InvalidExpiry", "expires_at must be a future time with a UTC offset", field="expires_at"
        )
    return expires_at


def initiate(
    custody: Custody,
    actor: Actor,
    envelope_id: str,
    to_org: Any,
    kind: Any,
    *,
    note: str | None = None,
    expires_at: datetime | None = None,
    confirm_required: bool = False,
    on_commit: OnTransfer | None = None,
) -> Transfer:
    """Offer the record to another organisation: only its controller may, only while vaulted and unreleased."""
    if kind not in TYPES:
        raise InvalidInput("Transfer.InvalidType", f"type must be one of {TYPES}", field="type")
    note = _text(note, "note")
    now = utcnow()
    expires_at = _expiry(expires_at, now)
    with custody.db.session() as session:
        envelope = lock_envelope(session, actor.org_id, envelope_id)
        require_control(envelope, actor.org_id)
        record = vault_record(session, envelope.id)
        if record is None:
            raise Conflict("Vault.NotVaulted", "only a vaulted record can be transferred", envelope_id=envelope.id)
        if record.released_at is not None:
            released = iso(record.released_at)
            raise Conflict("Vault.Released", "the record was released by vault-out", released_at=released)
        check_no_open_transfer(session, envelope, now)
        transfer = Transfer(
            id=new_id("tr"),
            envelope_id=envelope.id,
            org_id=envelope.org_id,
            from_org_id=actor.org_id,
            to_org_id=_receiver(session, to_org, envelope, kind),
            type=kind,
            status="pending",
            confirm_required=bool(confirm_required),
            note=note,
            expires_at=expires_at,
            created_at=now,
            created_by=actor.key_id or "",
            initiated_index=0,
        )
        session.add(transfer)
        session.flush()
        data = _data(
            transfer,
            confirm_required=transfer.confirm_required,
            expires_at=iso(expires_at) if expires_at else None,
            **({"note": note} if note else {}),
        )
        transfer.initiated_index = append_event(
            session, actor=actor, envelope_id=envelope.id, event_type=TRANSFER_INITIATED, occurred_at=now, data=data
        ).leaf_index
        touch(envelope, now)
        session.add_all([transfer, envelope])
        if on_commit is not None:
            on_commit(session, transfer)
    return transfer


def visible_transfer(session: Session, org_id: str, transfer_id: str) -> Transfer:
    """The transfer if ``org_id`` is one of its parties; anyone else's is indistinguishable from none."""
    found = session.get(Transfer, transfer_id) if TRANSFER_ID.fullmatch(transfer_id) else None
    if found is None or org_id not in (found.from_org_id, found.to_org_id):
        raise _not_found(transfer_id)
    return found


def _lock(session: Session, org_id: str, transfer_id: str) -> tuple[Envelope, Transfer]:
    """The transfer's envelope, then the transfer, locked in that order (as every step takes them)."""
    found = visible_transfer(session, org_id, transfer_id)
    envelope = session.exec(select(Envelope).where(Envelope.id == found.envelope_id).with_for_update()).one()
    transfer = session.exec(select(Transfer).where(Transfer.id == transfer_id).with_for_update()).one()
    session.refresh(transfer)
    return envelope, transfer


def _complete(session: Session, actor: Actor, envelope: Envelope, transfer: Transfer, now: datetime) -> None:
    """Control and/or custody move: the row and the chain's ``transfer.completed``. When control moves, the chain
    moves with it: the completion closes it in its log (``next_log``) and ``transfer.arrived`` opens it in the
    receiver's; a party whose log then holds neither gets ``transfer.recorded``."""
    if "control" in transfer.type:
        envelope.controller_org_id = transfer.to_org_id
    if "location" in transfer.type:
        envelope.custodian_org_id = transfer.to_org_id
    touch(envelope, now)
    transfer.status, transfer.completed_at = "completed", now
    session.add_all([envelope, transfer])
    log = chain_log(session, envelope.id, chain_head(session, envelope.id), envelope.org_id)
    moves = "control" in transfer.type and transfer.to_org_id != log
    event = append_event(
        session,
        actor=actor,
        envelope_id=envelope.id,
        event_type=TRANSFER_COMPLETED,
        occurred_at=now,
        data=_data(
            transfer,
            controller=envelope.controller,
            custodian=envelope.custodian,
            **({"next_log": transfer.to_org_id} if moves else {}),
        ),
    )
    transfer.completed_index = event.leaf_index
    hand_off = {"log": event.org_id, "leaf_index": event.leaf_index, "entry_hash": event.entry_hash}
    if moves:
        commit_head_map(session, event.org_id)  # the transferor's map names the hand-off as its final head there
        append_event(  # keyless: the receiver's log takes the chain over, on the completion's authority
            session,
            actor=Actor(transfer.to_org_id),
            envelope_id=envelope.id,
            event_type=TRANSFER_ARRIVED,
            occurred_at=now,
            data=_data(transfer, **hand_off),
            log=transfer.to_org_id,
        )
    holds = {event.org_id, transfer.to_org_id} if moves else {event.org_id}
    for party in sorted({transfer.from_org_id, transfer.to_org_id} - holds):
        append_event(
            session,
            actor=Actor(party),
            event_type=TRANSFER_RECORDED,
            occurred_at=now,
            data=_data(transfer, envelope_id=envelope.id, **hand_off),
        )


def _not_pending(transfer: Transfer) -> Conflict:
    return Conflict(
        "Transfer.NotPending", f"the transfer is {transfer.status}", transfer_id=transfer.id, status=transfer.status
    )


def respond(
    custody: Custody,
    actor: Actor,
    transfer_id: str,
    action: str,
    reason: str | None = None,
    on_commit: OnTransfer | None = None,
) -> Transfer:
    """Accept, reject (the receiver), cancel or confirm (the initiator): one step, under the locks."""
    reason = _text(reason, "reason")
    with custody.db.session() as session:
        envelope, transfer = _lock(session, actor.org_id, transfer_id)
        now = utcnow()
        party = transfer.to_org_id if action in ("accept", "reject") else transfer.from_org_id
        if actor.org_id != party:
            who = "the receiver" if party == transfer.to_org_id else "the initiator"
            raise Forbidden(
                "Transfer.NotReceiver" if party == transfer.to_org_id else "Transfer.NotInitiator",
                f"only {who} may {action} this transfer",
                transfer_id=transfer.id,
            )
        expired = _expire_if_due(session, envelope, transfer, now)
        wanted = "accepted" if action == "confirm" else "pending"
        if expired or transfer.status != wanted:
            if expired:  # the expiry is recorded; the refusal is the answer
                session.commit()
            if action == "confirm" and transfer.status == "pending":
                raise Conflict("Transfer.NotAccepted", "the receiver has not accepted yet", transfer_id=transfer.id)
            raise _not_pending(transfer)
        if action == "accept":
            transfer.status, transfer.accepted_at, transfer.accepted_by = "accepted", now, actor.key_id
            transfer.accepted_index = append_event(
                session,
                actor=actor,
                envelope_id=envelope.id,
                event_type=TRANSFER_ACCEPTED,
                occurred_at=now,
                data=_data(transfer),
            ).leaf_index
            if not transfer.confirm_required:
                _complete(session, actor, envelope, transfer, now)
        elif action == "confirm":
            if not transfer.confirm_required:
                raise _not_pending(transfer)
            _complete(session, actor, envelope, transfer, now)
        elif action == "reject":
            transfer.status, transfer.closed_at, transfer.closed_by = "rejected", now, actor.key_id
            transfer.reason = reason
            data = _data(transfer, reason=reason)
            append_event(
                session, actor=actor, envelope_id=envelope.id, event_type=TRANSFER_REJECTED, occurred_at=now, data=data
            )
        else:
            transfer.status, transfer.closed_at, transfer.closed_by = "cancelled", now, actor.key_id
            data = _data(transfer)
            append_event(
                session, actor=actor, envelope_id=envelope.id, event_type=TRANSFER_CANCELLED, occurred_at=now, data=data
            )
        session.add(transfer)
        if on_commit is not None:
            on_commit(session, transfer)
    return transfer


def expire_visible(custody: Custody, org_id: str, transfer_id: str) -> None:
    """Apply a due expiry before a party reads the transfer; a read-only look first, so most reads lock nothing."""
    now = utcnow()
    with custody.db.read_session() as session:
        transfer = visible_transfer(session, org_id, transfer_id)
        due = transfer.status in OPEN and transfer.expires_at is not None and as_utc(transfer.expires_at) <= now
    if due:
        with custody.db.session() as session:
            envelope, transfer = _lock(session, org_id, transfer_id)
            _expire_if_due(session, envelope, transfer, now)


def expire_due_transfers(custody: Custody) -> list[str]:
    """The sweep's part: expire every open transfer past its deadline (each under its locks, re-checked)."""
    now = utcnow()
    with custody.db.read_session() as session:
        due = list(
            session.exec(
                select(Transfer.id, Transfer.to_org_id).where(
                    col(Transfer.status).in_(OPEN), col(Transfer.expires_at) <= now
                )
            )
        )
    expired = []
    for transfer_id, receiver in due:
        with custody.db.session() as session:
            envelope, transfer = _lock(session, receiver, transfer_id)
            if _expire_if_due(session, envelope, transfer, now):
                expired.append(transfer_id)
    return expired
