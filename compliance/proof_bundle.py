"""Proof bundles: one envelope's history, checkable offline with nothing but the bundle and a public key.

Format ``evault-proof-bundle/v1`` (JSON; aligned with C2SP tlog-proof where it fits):
``{"format", "origin", "envelope_id", "checkpoint": <signed note>, "key": {"vkey", "pem"},
"events": [{"leaf_index", "entry": <base64 of the exact entry bytes>, "inclusion_proof": [<base64 hash>]}]}``.
Verification trusts only the public key the auditor brings: the checkpoint's signature and origin, each entry's
inclusion in that checkpoint, and the envelope's hash chain across the entries.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from compliance.ledger.chain import verify_chain
from compliance.ledger.checkpoint import Checkpoint, verify_checkpoint
from compliance.ledger.checkpoints import tree_for
from compliance.ledger.errors import INVALID_PROOF, MALFORMED, WRONG_KEY, LogError
from compliance.ledger.events import envelope_events
from compliance.ledger.merkle import leaf_hash, verify_inclusion
from compliance.ledger.note import NoteVerifier, b64decode_strict, raw_public_key
from compliance.signing import VaultKey
from compliance.trusted_checkpoint import load_trusted_key
from storage.models import Checkpoint as CheckpointRow

FORMAT = "evault-proof-bundle/v1"


@dataclass(frozen=True)
class VerifiedBundle:
    envelope_id: str
    checkpoint: Checkpoint
    events: list[dict[str, Any]]


def build_bundle(session: Session, key: VaultKey, envelope_id: str, checkpoint: CheckpointRow) -> dict[str, Any]:
    """Every event of the envelope that the checkpoint covers, each with its inclusion proof."""
    tree = tree_for(session, checkpoint.org_id, checkpoint.size)
    events = [e for e in envelope_events(session, envelope_id) if e.leaf_index < checkpoint.size]
    return {
        "format": FORMAT,
        "origin": Checkpoint.parse(checkpoint.note.split("\n\n", 1)[0] + "\n").origin,
        "envelope_id": envelope_id,
        "checkpoint": checkpoint.note,
        "key": {"vkey": key.note_verifier.vkey, "pem": key.public_pem()},
        "events": [
            {
                "leaf_index": e.leaf_index,
                "entry": base64.b64encode(e.entry).decode(),
                "inclusion_proof": [
                    base64.b64encode(h).decode() for h in tree.inclusion_proof(e.leaf_index, checkpoint.size)
                ],
            }
            for e in events
        ],
    }


def _field(obj: Any, name: str, kind: type) -> Any:
    if not isinstance(obj, dict) or not isinstance(obj.get(name), kind) or isinstance(obj.get(name), bool):
        raise LogError(MALFORMED, f"bundle field {name!r} is missing or not a {kind.__name__}")
    return obj[name]


def verifier_for(bundle_key: dict[str, Any], trusted_pem: bytes) -> NoteVerifier:
    """The bundle names its key; the auditor's own PEM decides whether that key is trusted."""
    trusted = load_trusted_key(trusted_pem)
    named = NoteVerifier.from_vkey(_field(bundle_key, "vkey", str))
    if raw_public_key(named.public_key) != raw_public_key(trusted):
        raise LogError(WRONG_KEY, "the bundle was signed with a key other than the one you trust")
    return named


def verify_bundle(text: str | bytes, trusted_pem: bytes, expected_origin: str | None = None) -> VerifiedBundle:
    try:
        bundle = json.loads(text)
    except ValueError as exc:
        raise LogError(MALFORMED, "bundle is not JSON", error=str(exc)) from None
    if _field(bundle, "format", str) != FORMAT:
        raise LogError(MALFORMED, f"bundle format must be {FORMAT}")
    origin = _field(bundle, "origin", str)
    if expected_origin is not None and origin != expected_origin:
        raise LogError("Log.WrongOrigin", "bundle is for another log", origin=origin, expected=expected_origin)
    verifier = verifier_for(_field(bundle, "key", dict), trusted_pem)
    checkpoint = verify_checkpoint(_field(bundle, "checkpoint", str), verifier, origin)
    envelope_id = _field(bundle, "envelope_id", str)
    entries: list[bytes] = []
    for item in _field(bundle, "events", list):
        index = _field(item, "leaf_index", int)
        entry = b64decode_strict(_field(item, "entry", str), "entry")
        proof = [b64decode_strict(h, "proof hash") for h in _field(item, "inclusion_proof", list) if isinstance(h, str)]
        if len(proof) != len(item["inclusion_proof"]):
            raise LogError(MALFORMED, "proof hashes must be base64 strings")
        verify_inclusion(leaf_hash(entry), index, checkpoint.size, proof, checkpoint.root_hash)
        entries.append(entry)
    if not entries:
        raise LogError(MALFORMED, "bundle has no events")
    parsed = verify_chain(envelope_id, entries)
    for item, value in zip(bundle["events"], parsed, strict=True):
        if value.get("index") != item["leaf_index"] or origin.rsplit("/", 1)[-1] != value.get("log"):
            raise LogError(
                INVALID_PROOF,
                "an entry names another position or log than it was proven at",
                leaf_index=item["leaf_index"],
            )
    return VerifiedBundle(envelope_id, checkpoint, parsed)
