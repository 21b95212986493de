"""The release receipt: the vault's signed word that an envelope's authoritative copy left its control.

It attests the ``vault.released`` event (why, to whom, when, by which key) and the vault-in event (the
documents' hashes), each with its log position and an inclusion proof against a signed checkpoint, and binds
every field to those entries: nothing in it is the vault's word alone beyond the signature. What the ledger
records decides (a row saying "released" that the chain does not support gives no receipt).
"""

from __future__ import annotations

from typing import Any

from compliance.checkpoints.freshness import SignsOnDemand, covering_checkpoint
from compliance.errors import Conflict, NotFound
from compliance.ledger.event_catalogue import Role, with_role
from compliance.ledger.events import Actor, envelope_events
from compliance.ledger.vault_key import VaultKey
from compliance.receipts.document import Attested, build_receipt
from compliance.receipts.kinds import RELEASE
from compliance.sources import Sources
from storage.models import Checkpoint as CheckpointRow
from storage.models import Envelope, Event

NOT_RELEASED = "Receipt.NotReleased"

BINDINGS: dict[str, tuple[str, str]] = {
    "organisation": ("release", "/log"),
    "released_at": ("release", "/time"),
    "released_by": ("release", "/actor"),
    "reason": ("release", "/data/reason"),
    "transferee": ("release", "/data/transferee"),
    "note": ("release", "/data/note"),
    "authoritative_copy_id": ("release", "/data/authoritative_copy_id"),
    "vaulted_at": ("vault_in", "/time"),
    "documents": ("vault_in", "/data/documents"),
}


def _attested(events: list[Event]) -> list[Attested]:
    releases = [e for e in events if e.event_type in with_role(Role.RELEASE)]
    vault_ins = [e for e in events if e.event_type in with_role(Role.VAULT_IN)]
    if not releases or not vault_ins:
        raise Conflict(NOT_RELEASED, "the envelope's authoritative copy has not been released (vaulted out)")
    return [Attested("vault_in", vault_ins[0]), Attested("release", releases[-1])]


def release_receipt(
    sources: Sources, key: VaultKey, checkpoints: SignsOnDemand, actor: Actor, envelope_id: str
) -> dict[str, Any]:
    """The signed ``release`` receipt of one of the actor's envelopes; 409 ``Receipt.NotReleased`` before vault-out."""
    with sources.db.read_session() as session:
        envelope = session.get(Envelope, envelope_id)
        if envelope is None or envelope.org_id != actor.org_id:
            raise NotFound("Envelope.NotFound", "no such envelope", envelope_id=envelope_id)
        attested = _attested(envelope_events(session, envelope_id))
    sources.deadline.check()
    covering: dict[str, CheckpointRow] = {}
    for item in attested:
        org_id, covers = item.event.org_id, item.event.leaf_index + 1
        if org_id not in covering or covering[org_id].size < covers:
            covering[org_id] = covering_checkpoint(sources.db, checkpoints, org_id, covers)
    sources.deadline.check()
    with sources.db.read_session() as session:
        return build_receipt(
            session,
            key,
            kind=RELEASE.name,
            envelope_id=envelope_id,
            fields={},
            attested=attested,
            bindings=BINDINGS,
            checkpoints=covering,
        )
