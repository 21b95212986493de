"""What the §9-105 conditions look at, gathered once per check from the database, the ledger and the key.

Gathering reads only; the conditions (``compliance/conditions/policies.py``) then read live storage themselves where
the statute asks about the object (its bytes, lock, versions, and every copy under the envelope's prefix). A
copy's bytes are not among them: its mark was verified at issuance, and its row says so.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlmodel import Session, col, select

from compliance.checkpoints.publisher import latest_checkpoint, tree_for
from compliance.conditions.key_projection import compare_keys, key_ledger
from compliance.conditions.projection import Mismatch, Projection, Rows, compare, fold, snapshot
from compliance.errors import NotFound
from compliance.headmap.sparse_tree import MapProof
from compliance.headmap.sql_store import map_root_ending, prove_at
from compliance.ledger.chain import parse_entry
from compliance.ledger.event_catalogue import Role, with_role
from compliance.ledger.events import envelope_events
from compliance.ledger.log_error import LogError
from compliance.sources import Sources
from storage.ids import utcnow
from storage.models import ApiKey, CopyClaim, CopyRecord, Envelope, Event, VaultedDocument, VaultRecord
from storage.models import Checkpoint as CheckpointRow


@dataclass(frozen=True)
class Custodian:
    """The vault operator that maintains authoritative copies for the secured party (from settings)."""

    name: str
    id: str

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "id": self.id}


@dataclass(frozen=True)
class Policy:
    """What the deployment says must hold: its custodian and the bucket that alone holds authoritative copies."""

    custodian: Custodian
    authoritative_bucket: str
    # A copy claim younger than this names a copy on its way (put, its register not yet committed); an older one
    # is a request that died, whose object is an unregistered copy until the reconciler deletes it, as the
    # verifier says (EVAULT_CLAIM_GRACE_SECONDS).
    claim_grace: timedelta


@dataclass
class LogProof:
    """One log's part of the evidence: its latest signed checkpoint, the map it commits, and inclusion proofs."""

    org_id: str
    checkpoint: CheckpointRow | None
    map_entry: Event | None = None  # the checkpoint's last entry when it is a map.root commit
    map_proof: MapProof | None = None
    inclusion: dict[int, list[bytes]] = field(default_factory=dict)  # leaf index -> proof at checkpoint size


@dataclass
class Evidence:
    sources: Sources
    policy: Policy
    envelope: Envelope
    record: VaultRecord | None
    documents: list[VaultedDocument]
    copies: list[CopyRecord]
    events: list[Event]  # the envelope's chain as the database holds it, by seq
    keys: dict[str, ApiKey]  # the key rows the events' actors name
    logs: dict[str, LogProof]  # each log the chain is in (the log it is in now last): its proofs
    unsupported: list[Mismatch] = field(default_factory=list)  # rows (and key rows) the ledger does not support
    claimed_copies: frozenset[str] = frozenset()  # keys of copies in flight: put, not yet registered (CopyClaim)
    stale_claims: frozenset[str] = frozenset()  # keys of copy claims past the grace period: requests that died

    @property
    def checkpoint(self) -> CheckpointRow | None:
        """The latest signed checkpoint of the log the chain is in now."""
        return next(reversed(self.logs.values())).checkpoint if self.logs else None

    def chain_supports_rows(self) -> list[Mismatch]:
        """Fold the chain into the state it implies and compare the rows; nothing when an entry does not parse
        (condition 6 reports that entry itself)."""
        values = [self.parsed(event) for event in self.events]
        if any(value is None for value in values):
            return []
        chain = fold(self.envelope.id, (value for value in values if value is not None))
        return compare(chain, Rows(self.envelope, self.record, self.documents, self.copies))

    def chain(self) -> Projection:
        """The state the chain implies (entries that no longer parse are left out: condition 6 reports them)."""
        values = (self.parsed(event) for event in self.events)
        return fold(self.envelope.id, (value for value in values if value is not None))

    def parsed(self, event: Event) -> dict[str, Any] | None:
        """The entry as JSON, or None when it is not canonical JSON any more (condition 6 reports that)."""
        try:
            return parse_entry(event.entry)
        except LogError:
            return None

    def ledger_events(self, *roles: Role) -> list[tuple[Event, dict[str, Any]]]:
        """The chain's entries whose declared events play one of ``roles``, in chain order."""
        names, found = with_role(*roles), []
        for event in self.events:
            value = self.parsed(event)
            if value is not None and value.get("type") in names:
                found.append((event, value))
        return found

    def vaulted_in(self) -> dict[str, Any] | None:
        """The last vault-in entry's data: what the ledger says was vaulted."""
        entries = self.ledger_events(Role.VAULT_IN)
        data = entries[-1][1].get("data") if entries else None
        return data if isinstance(data, dict) else None

    def copy_prefix(self) -> str:
        return f"copies/{self.envelope.org_id}/{self.envelope.id}/"


def gather(sources: Sources, policy: Policy, caller_org: str, envelope_id: str) -> Evidence:
    """Read everything the conditions need in one read transaction; an envelope the caller's organisation
    neither controls nor keeps is a 404. The chain is read from every log it is in (a hand-off of control moves it
    to the receiver's), each with its latest checkpoint."""
    sources.deadline.check()
    with sources.db.read_session() as session:
        snapshot(session)  # the rows and the events committed with them, as of one moment
        envelope = session.get(Envelope, envelope_id)
        if envelope is None or not envelope.held_by(caller_org):
            raise NotFound("Envelope.NotFound", "no such envelope", envelope_id=envelope_id)
        org_id = envelope.org_id
        record = session.exec(select(VaultRecord).where(VaultRecord.envelope_id == envelope_id)).first()
        documents = (
            list(
                session.exec(
                    select(VaultedDocument)
                    .where(VaultedDocument.record_id == record.id)
                    .order_by(col(VaultedDocument.position))
                )
            )
            if record is not None
            else []
        )
        copies = list(
            session.exec(
                select(CopyRecord).where(CopyRecord.envelope_id == envelope_id).order_by(col(CopyRecord.issued_at))
            )
        )
        recent = col(CopyClaim.claimed_at) >= utcnow() - policy.claim_grace
        claims = session.exec(select(CopyClaim.s3_key, recent).where(CopyClaim.envelope_id == envelope_id)).all()
        events = envelope_events(session, envelope_id)
        sources.deadline.check()
        evidence = Evidence(
            sources,
            policy,
            envelope,
            record,
            documents,
            copies,
            events,
            {},
            {},
            claimed_copies=frozenset(key for key, young in claims if young),
            stale_claims=frozenset(key for key, young in claims if not young),
        )
        key_ids = set()
        for event in events:
            actor = (evidence.parsed(event) or {}).get("actor")
            if isinstance(actor, dict) and isinstance(actor.get("key_id"), str):
                key_ids.add(actor["key_id"])
        evidence.keys = {k.id: k for k in session.exec(select(ApiKey).where(col(ApiKey.id).in_(key_ids)))}
        keys: list[Mismatch] = []
        for owner in sorted({k.org_id for k in evidence.keys.values()}):  # after a transfer, the receiver's act too
            owned = [k for k in evidence.keys.values() if k.org_id == owner]
            keys += compare_keys(key_ledger(session, owner), owned)
        evidence.unsupported = evidence.chain_supports_rows() + keys
        logs = [e.org_id for e in events] or [org_id]
        for log in sorted(set(logs), key=lambda o: (o == logs[-1], logs.index(o))):  # the current log last
            evidence.logs[log] = _log_proof(session, sources, log, [e for e in events if e.org_id == log], envelope_id)
    return evidence


def _log_proof(session: Session, sources: Sources, org_id: str, events: list[Event], envelope_id: str) -> LogProof:
    checkpoint = latest_checkpoint(session, org_id)
    proof = LogProof(org_id, checkpoint)
    if checkpoint is None:
        return proof
    tree = tree_for(session, org_id, checkpoint.size)
    covered = [e.leaf_index for e in events if 0 <= e.leaf_index < checkpoint.size]
    committed = map_root_ending(session, org_id, checkpoint.size)
    if committed is not None:
        proof.map_entry = session.exec(
            select(Event).where(Event.org_id == org_id, Event.leaf_index == committed.entry_index)
        ).first()
        proof.map_proof = prove_at(session, org_id, committed.version, envelope_id)
        covered.append(committed.entry_index)
    for index in covered:
        sources.deadline.check()
        proof.inclusion[index] = tree.inclusion_proof(index, checkpoint.size)
    return proof


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (entries are read defensively)."""
    return value if isinstance(value, dict) else {}


def entry_digest(event: Event) -> str:
    return hashlib.sha256(event.entry).hexdigest()
