"""The transfer receipt: the vault's signed word that control and/or custody of a record moved between two of
its organisations (docs/transfers.md).

It attests the transfer's ``transfer.initiated``, ``transfer.accepted`` and ``transfer.completed`` entries and
the record's ``vault.vaulted_in`` entry, each with its log position and an inclusion proof against a signed
checkpoint, and binds every field to them: the envelope, both organisations by their ids, the type, the
document hashes, who initiated and accepted (by key) and when, and the controller and custodian it left. Both
parties may fetch it, also after the record left one of them.
"""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session, col, select

from compliance.checkpoints.freshness import SignsOnDemand, covering_checkpoint
from compliance.errors import Conflict, NotFound
from compliance.ledger.chain import parse_entry
from compliance.ledger.event_catalogue import (
    TRANSFER_ACCEPTED,
    TRANSFER_COMPLETED,
    TRANSFER_INITIATED,
    Role,
    with_role,
)
from compliance.ledger.events import Actor, envelope_events
from compliance.ledger.vault_key import VaultKey
from compliance.receipts.countersign import statement
from compliance.receipts.document import Attested, build_receipt
from compliance.receipts.kinds import TRANSFER
from compliance.receipts.pointer import resolve
from compliance.sources import Sources
from storage.models import Checkpoint as CheckpointRow
from storage.models import Event, OrgSigningKey, ReceiptCountersignature, Transfer

NOT_COMPLETED = "Receipt.NotCompleted"

BINDINGS: dict[str, tuple[str, str]] = {
    "transfer_id": ("initiate", "/data/transfer_id"),
    "log": ("initiate", "/log"),
    "from_organisation": ("initiate", "/data/from_org"),
    "to_organisation": ("initiate", "/data/to_org"),
    "type": ("initiate", "/data/type"),
    "initiated_at": ("initiate", "/time"),
    "initiated_by": ("initiate", "/actor"),
    "accepted_at": ("accept", "/time"),
    "accepted_by": ("accept", "/actor"),
    "completed_at": ("complete", "/time"),
    "controller": ("complete", "/data/controller"),
    "custodian": ("complete", "/data/custodian"),
    "documents": ("vault_in", "/data/documents"),
}
STEPS = {TRANSFER_INITIATED.name: "initiate", TRANSFER_ACCEPTED.name: "accept", TRANSFER_COMPLETED.name: "complete"}


def _attested(events: list[Event], transfer_id: str) -> list[Attested]:
    vault_ins = [e for e in events if e.event_type in with_role(Role.VAULT_IN)]
    steps = {
        STEPS[e.event_type]: e
        for e in events
        if e.event_type in STEPS and json.loads(e.entry).get("data", {}).get("transfer_id") == transfer_id
    }
    if not vault_ins or set(steps) != set(STEPS.values()):
        raise Conflict(NOT_COMPLETED, "the transfer has not completed: control has not moved", transfer_id=transfer_id)
    return [Attested("vault_in", vault_ins[0]), *(Attested(role, steps[role]) for role in STEPS.values())]


def transfer_receipt(
    sources: Sources, key: VaultKey, checkpoints: SignsOnDemand, actor: Actor, transfer_id: str
) -> dict[str, Any]:
    """The signed ``transfer`` receipt for either party; 409 ``Receipt.NotCompleted`` before control moved."""
    with sources.db.read_session() as session:
        transfer = session.get(Transfer, transfer_id)
        if transfer is None or actor.org_id not in (transfer.from_org_id, transfer.to_org_id):
            raise NotFound("Transfer.NotFound", "no such transfer", transfer_id=transfer_id)
        attested = _attested(envelope_events(session, transfer.envelope_id), transfer_id)
        envelope_id = transfer.envelope_id
    sources.deadline.check()
    covering: dict[str, CheckpointRow] = {}  # the chain may have crossed logs (a hand-off): one per log
    for log in {a.event.org_id for a in attested}:
        last = max(a.event.leaf_index for a in attested if a.event.org_id == log)
        covering[log] = covering_checkpoint(sources.db, checkpoints, log, last + 1)
    sources.deadline.check()
    with sources.db.read_session() as session:
        return build_receipt(
            session,
            key,
            kind=TRANSFER.name,
            envelope_id=envelope_id,
            fields={},
            attested=attested,
            bindings=BINDINGS,
            checkpoints=covering,
            countersignatures=countersignatures(session, transfer_id),
        )


def countersignatures(session: Session, transfer_id: str) -> list[dict[str, Any]]:
    """The parties' countersignatures of the transfer's statement, each with its registered key, by organisation."""
    rows = session.exec(
        select(ReceiptCountersignature, OrgSigningKey)
        .where(
            ReceiptCountersignature.transfer_id == transfer_id, ReceiptCountersignature.key_id == OrgSigningKey.key_id
        )
        .order_by(col(ReceiptCountersignature.org_id))
    )
    return [
        {"org_id": c.org_id, "key_id": c.key_id, "public_key": k.public_pem, "alg": "Ed25519", "value": c.value}
        for c, k in rows
    ]


def transfer_statement(session: Session, transfer: Transfer) -> bytes:
    """What a party countersigns: the statement every issue of this transfer's receipt makes (409 before it
    completed)."""
    attested = {a.role: a for a in _attested(envelope_events(session, transfer.envelope_id), transfer.id)}
    fields = {f: resolve(parse_entry(attested[role].event.entry), p) for f, (role, p) in BINDINGS.items()}
    return statement(TRANSFER.name, transfer.envelope_id, fields)
