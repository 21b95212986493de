"""Building and signing an ``evault-receipt/v1``: named fields, the events they rest on, and the proofs.

``{"receipt": {...}, "signature": {"alg": "Ed25519", "key_id": "sha256:<hex of the key's SPKI DER>",
"value": <base64>}}``, the signature Ed25519 over the RFC 8785 encoding of ``receipt`` with the vault's
checkpoint key (the one published at ``/.well-known/evault/keys``), as for certificates. The receipt carries
each attested event's exact log entry with an inclusion proof against a signed checkpoint of its log, and
binds fields to those entries (``bindings``: field name, event role, RFC 6901 pointer into the entry), so that
what the receipt says is read from the log rather than asserted beside it. Events may come from several logs
(one checkpoint per log), which a transfer between organisations needs. The format is in
docs/evidence-formats.md; the offline check is ``compliance/receipts/offline_check.py``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import rfc8785
from sqlmodel import Session

from compliance.bundles.proof_bundle import signing_key_of
from compliance.certificates.issuance import key_id_of
from compliance.checkpoints.publisher import tree_for
from compliance.ledger.chain import parse_entry
from compliance.ledger.checkpoint_format import Checkpoint
from compliance.ledger.vault_key import VaultKey
from compliance.receipts.pointer import resolve
from storage.ids import iso, utcnow
from storage.models import Checkpoint as CheckpointRow
from storage.models import Event

FORMAT = "evault-receipt/v1"


@dataclass(frozen=True)
class Attested:
    """One event the receipt rests on, under the role its kind names (``release``, ``vault_in``, ...)."""

    role: str
    event: Event


def origin_of(checkpoint: CheckpointRow) -> str:
    return Checkpoint.parse(checkpoint.note.split("\n\n", 1)[0] + "\n").origin


def _proven(session: Session, attested: Attested, checkpoint: CheckpointRow) -> dict[str, Any]:
    event = attested.event
    if event.leaf_index >= checkpoint.size:
        raise ValueError(f"leaf {event.leaf_index} is not covered by the checkpoint of size {checkpoint.size}")
    tree = tree_for(session, event.org_id, checkpoint.size)
    return {
        "role": attested.role,
        "log": origin_of(checkpoint),
        "leaf_index": event.leaf_index,
        "entry": base64.b64encode(event.entry).decode(),
        "inclusion_proof": [
            base64.b64encode(h).decode() for h in tree.inclusion_proof(event.leaf_index, checkpoint.size)
        ],
    }


def build_receipt(
    session: Session,
    key: VaultKey,
    *,
    kind: str,
    envelope_id: str,
    fields: Mapping[str, Any],
    attested: Sequence[Attested],
    bindings: Mapping[str, tuple[str, str]],
    checkpoints: Mapping[str, CheckpointRow],
    countersignatures: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The signed receipt. ``fields`` are stated as given; each of ``bindings`` (field -> (role, pointer)) is
    read from the attested entry, so a bound field cannot disagree with the log. ``checkpoints`` maps each
    organisation whose log holds an attested event to a signed checkpoint covering it."""
    by_role = {a.role: a for a in attested}
    if len(by_role) != len(attested):
        raise ValueError("each attested event needs a role of its own")
    bound: dict[str, Any] = {}
    for field, (role, pointer) in bindings.items():
        bound[field] = resolve(parse_entry(by_role[role].event.entry), pointer)
    used = {a.event.org_id: checkpoints[a.event.org_id] for a in attested}
    chain: list[str] = []
    key_shown: dict[str, dict[str, str]] = {}
    for checkpoint in used.values():
        signed_by, rotations = signing_key_of(session, key, checkpoint.note)
        key_shown[origin_of(checkpoint)] = signed_by
        chain += [r for r in rotations if r not in chain]
    body: dict[str, Any] = {
        "format": FORMAT,
        "kind": kind,
        "issued_at": iso(utcnow()),
        "issuer": {"key_id": key_id_of(key.public_key)},
        "envelope_id": envelope_id,
        "fields": {**fields, **bound},
        "bindings": [{"field": f, "event": role, "pointer": p} for f, (role, p) in bindings.items()],
        "events": [_proven(session, a, checkpoints[a.event.org_id]) for a in attested],
        "checkpoints": [
            {
                "origin": origin_of(c),
                "note": c.note,
                "key": key_shown[origin_of(c)],
                "timestamp_token": base64.b64encode(c.timestamp_token).decode() if c.timestamp_token else None,
            }
            for c in used.values()
        ],
        **({"key_chain": chain} if chain else {}),
        # The parties' own signatures over the statement (compliance/receipts/countersign.py), when they gave any.
        **({"countersignatures": [dict(c) for c in countersignatures]} if countersignatures else {}),
    }
    value = key.sign(rfc8785.dumps(body))
    signature = {"alg": "Ed25519", "key_id": key_id_of(key.public_key), "value": base64.b64encode(value).decode()}
    return {"receipt": body, "signature": signature}
