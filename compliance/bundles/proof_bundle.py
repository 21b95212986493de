"""Proof bundles: one envelope's history, checkable offline with nothing but the bundle and a public key.

Format ``evault-proof-bundle/v2`` (JSON; aligned with C2SP tlog-proof where it fits):
``{"format", "origin", "envelope_id", "checkpoint": <signed note>, "key": {"vkey", "pem"},
"events": [{"leaf_index", "entry": <base64 of the exact entry bytes>, "inclusion_proof": [<base64 hash>]}],
"map": {"entry": <the checkpoint's last entry, a map.root, with its inclusion proof>, "proof": <head-map proof>}}``.
Verification trusts only the public key the auditor brings: the checkpoint's signature and origin, each entry's
inclusion in that checkpoint, the envelope's hash chain across the entries, and, with the head map committed by
the checkpoint's last entry, that the last event shown is the envelope's head (or that it has no events at all).
Version 1 bundles (no map) still verify, but only as a prefix of the history: they cannot show it is complete.

After a key rotation the bundle also carries ``"key_chain"``: the rotation statements from the first key to the
one that signed its checkpoint (or the vault's current key, if later), so an auditor who pinned the first key
follows the chain (``compliance.ledger.key_history``); a key set the auditor brings adds later revocations.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, select

from compliance import strict_json
from compliance.bundles.cross_log import FORMAT_V3, Segment, build_v3, crosses_logs, handed_to, verify_v3
from compliance.checkpoints.auditor_memory import load_trusted_key
from compliance.checkpoints.policy import CheckpointTrust
from compliance.checkpoints.publisher import tree_for
from compliance.errors import Conflict
from compliance.headmap.sparse_tree import MapProof, map_key, tree_id_for, verify_map_proof
from compliance.headmap.sql_store import map_root_ending, prove_at
from compliance.ledger.chain import parse_entry, verify_chain
from compliance.ledger.checkpoint_format import Checkpoint, verify_checkpoint
from compliance.ledger.event_catalogue import MAP_ROOT, TRANSFER_ARRIVED
from compliance.ledger.events import envelope_events
from compliance.ledger.key_history import KeyHistory, KeyPeriod, KeySet
from compliance.ledger.key_ring import generations
from compliance.ledger.log_error import INCOMPLETE, INVALID_PROOF, MALFORMED, SEGMENT_MISSING, WRONG_KEY, LogError
from compliance.ledger.merkle import leaf_hash, verify_inclusion
from compliance.ledger.note import NoteVerifier, b64decode_strict, parse_note
from compliance.ledger.tiles import TiledTree
from compliance.ledger.vault_key import VaultKey
from storage.models import Checkpoint as CheckpointRow
from storage.models import Event

FORMAT = "evault-proof-bundle/v2"
FORMAT_V1 = "evault-proof-bundle/v1"


@dataclass(frozen=True)
class Completeness:
    """What the head map committed in the checkpoint says: the envelope's head seq, or None if it has none."""

    head_seq: int | None
    map_version: int  # the log size the map covers; the map.root entry sits at this index


@dataclass(frozen=True)
class VerifiedBundle:
    envelope_id: str
    checkpoint: Checkpoint
    events: list[dict[str, Any]]
    completeness: Completeness | None  # None: a v1 bundle, which proves a prefix of the history only
    key: KeyPeriod  # the generation of the vault's key that signed the checkpoint
    segments: tuple[Segment, ...] = ()  # v3: the chain's runs in each log, in order (empty: one log)

    @property
    def handed_to(self) -> str | None:
        """v3: the organisation the last entry handed control to (the history goes on in its log), if any."""
        return self.segments[-1].handed_to if self.segments else None


def proven(tree: TiledTree, size: int, event: Event) -> dict[str, Any]:
    return {
        "leaf_index": event.leaf_index,
        "entry": base64.b64encode(event.entry).decode(),
        "inclusion_proof": [base64.b64encode(h).decode() for h in tree.inclusion_proof(event.leaf_index, size)],
    }


def signing_key_of(session: Session, key: VaultKey, note: str) -> tuple[dict[str, str], list[str]]:
    """The generation that signed ``note`` (vkey and PEM), and the rotation statements from the first key up to it
    or to ``key`` (the signer of a certificate embedding this bundle), whichever is later."""
    lines = {(s.name, s.key_id) for s in parse_note(note).signatures}
    rows = generations(session)
    signed_by = None
    for row in rows:
        verifier = NoteVerifier.from_vkey(row.vkey)
        if (verifier.name, verifier.key_id) in lines:
            signed_by = row
    if signed_by is None:
        return {"vkey": key.note_verifier.vkey, "pem": key.public_pem()}, []
    current = next((r.generation for r in rows if r.vkey == key.note_verifier.vkey), 0)
    last = max(signed_by.generation, current)
    chain = [r.statement for r in rows if r.statement and r.generation <= last]
    return {"vkey": signed_by.vkey, "pem": signed_by.public_pem}, chain


def build_bundle(session: Session, key: VaultKey, envelope_id: str, checkpoint: CheckpointRow) -> dict[str, Any]:
    """The envelope's events up to the head map the checkpoint commits, with proofs; no events: proof of absence."""
    org_id = checkpoint.org_id
    chain = envelope_events(session, envelope_id)
    if crosses_logs(chain):
        return build_v3(session, key, envelope_id, checkpoint, chain)
    committed = map_root_ending(session, org_id, checkpoint.size)
    if committed is None:
        raise Conflict("Log.MapNotCommitted", "the checkpoint does not end with a map commit", size=checkpoint.size)
    tree = tree_for(session, org_id, checkpoint.size)
    signed_by, key_chain = signing_key_of(session, key, checkpoint.note)
    map_entry = session.exec(
        select(Event).where(Event.org_id == org_id, Event.leaf_index == committed.entry_index)
    ).one()
    events = [e for e in chain if e.org_id == org_id and e.leaf_index < committed.version]
    return {
        "format": FORMAT,
        "origin": Checkpoint.parse(checkpoint.note.split("\n\n", 1)[0] + "\n").origin,
        "envelope_id": envelope_id,
        "checkpoint": checkpoint.note,
        "key": signed_by,
        **({"key_chain": key_chain} if key_chain else {}),
        "events": [proven(tree, checkpoint.size, e) for e in events],
        "map": {
            "entry": proven(tree, checkpoint.size, map_entry),
            "proof": prove_at(session, org_id, committed.version, envelope_id).as_json(),
        },
        # The TSA's reply over the note, if one was taken: checked by `--tsa-roots`, ignored otherwise.
        "timestamp_token": base64.b64encode(checkpoint.timestamp_token).decode()
        if checkpoint.timestamp_token
        else None,
    }


def field(obj: Any, name: str, kind: type) -> Any:
    if not isinstance(obj, dict) or not isinstance(obj.get(name), kind) or isinstance(obj.get(name), bool):
        raise LogError(MALFORMED, f"bundle field {name!r} is missing or not a {kind.__name__}")
    return obj[name]


def key_history_for(bundle: dict[str, Any], trusted_pem: bytes, keys: KeySet | None = None) -> KeyHistory:
    """The keys that follow from the auditor's own PEM, by the rotations the bundle carries and ``keys`` adds."""
    chain = bundle.get("key_chain", [])
    if not isinstance(chain, list) or not all(isinstance(note, str) for note in chain):
        raise LogError(MALFORMED, "bundle field 'key_chain' must be a list of rotation statements")
    return (keys or KeySet()).history(load_trusted_key(trusted_pem), chain)


def verifier_for(bundle_key: dict[str, Any], history: KeyHistory) -> tuple[NoteVerifier, KeyPeriod]:
    """The bundle names its key; it is trusted only as a key of the chain that starts at the auditor's key."""
    named = NoteVerifier.from_vkey(field(bundle_key, "vkey", str))
    try:
        return named, history.period_of(named.public_key)
    except LogError:
        raise LogError(WRONG_KEY, "the bundle was signed with a key other than the one you trust") from None


def included(item: Any, checkpoint: Checkpoint) -> tuple[int, bytes]:
    index = field(item, "leaf_index", int)
    entry = b64decode_strict(field(item, "entry", str), "entry")
    hashes = field(item, "inclusion_proof", list)
    if not all(isinstance(h, str) for h in hashes):
        raise LogError(MALFORMED, "proof hashes must be base64 strings")
    proof = [b64decode_strict(h, "proof hash") for h in hashes]
    verify_inclusion(leaf_hash(entry), index, checkpoint.size, proof, checkpoint.root_hash)
    return index, entry


def map_commit(item: Any, checkpoint: Checkpoint, org_id: str, last: bool = True) -> tuple[int, bytes]:
    """(version, root) of the map a ``map.root`` entry commits: the checkpoint's last entry (the present), or with
    ``last`` False any of its entries (a past map, as a hand-off's, which maps the entries before it)."""
    index, entry = included(item, checkpoint)
    value = parse_entry(entry)
    data = value.get("data")
    if (last and index != checkpoint.size - 1) or value.get("index") != index or value.get("log") != org_id:
        raise LogError(INVALID_PROOF, "the map commit is not the checkpoint's last entry of this log", leaf_index=index)
    if value.get("type") != MAP_ROOT.name or value.get("envelope") is not None or not isinstance(data, dict):
        raise LogError(MALFORMED, "the checkpoint's last entry is not a map.root entry", leaf_index=index)
    version, root = data.get("version"), data.get("map_root")
    if not isinstance(version, int) or version != data.get("log_size_mapped") or not 0 <= version <= index:
        raise LogError(MALFORMED, "map.root entry names no valid version")
    if not last and version != index:
        raise LogError(MALFORMED, "a past map.root entry maps another size than the entries before it")
    if not isinstance(root, str) or len(root) != 64:
        raise LogError(MALFORMED, "map.root entry names no 32-byte root")
    try:
        return version, bytes.fromhex(root)
    except ValueError:
        raise LogError(MALFORMED, "map.root entry root is not hex") from None


def _completeness(
    bundle: dict[str, Any], checkpoint: Checkpoint, org_id: str, envelope_id: str, entries: list[bytes]
) -> Completeness:
    """Check the history against the head map: it must end exactly at the head the map commits to."""
    part = field(bundle, "map", dict)
    version, root = map_commit(field(part, "entry", dict), checkpoint, org_id)
    if any(item["leaf_index"] >= version for item in bundle["events"]):
        raise LogError(INVALID_PROOF, "the bundle shows events the committed map does not cover", version=version)
    head = verify_map_proof(tree_id_for(org_id), map_key(envelope_id), MapProof.from_json(part.get("proof")), root)
    shown = len(entries) - 1
    if head is None:
        if entries:
            raise LogError(INVALID_PROOF, "the map proves the envelope absent, yet the bundle shows its events")
        return Completeness(None, version)
    if head.seq > shown:
        raise LogError(
            INCOMPLETE, "the history is cut off: the map names a later head", head_seq=head.seq, last_shown=shown
        )
    if head.seq < shown or head.entry_hash != hashlib.sha256(entries[-1]).digest():
        raise LogError(INVALID_PROOF, "the map's head is not the last event shown", head_seq=head.seq)
    return Completeness(head.seq, version)


def verify_bundle(
    text: str | bytes,
    trusted_pem: bytes,
    expected_origin: str | None = None,
    keys: KeySet | None = None,
    trust: CheckpointTrust | None = None,
) -> VerifiedBundle:
    """Check the bundle from the auditor's key; ``keys`` adds rotations and revocations, ``trust`` the witnesses
    and TSA roots that may date a checkpoint signed by a since-compromised key before its compromise."""
    try:
        bundle = strict_json.loads(text)
    except ValueError as exc:
        raise LogError(MALFORMED, "bundle is not JSON", error=str(exc)) from None
    form = field(bundle, "format", str)
    if form not in (FORMAT, FORMAT_V1, FORMAT_V3):
        raise LogError(MALFORMED, f"bundle format must be {FORMAT_V3} or {FORMAT} (or {FORMAT_V1})")
    if form == FORMAT_V3:
        history = key_history_for(bundle, trusted_pem, keys)
        parsed, segments, final, head_seq = verify_v3(bundle, history, trust or CheckpointTrust(), expected_origin)
        done = Completeness(head_seq, segments[-1].map_version)
        return VerifiedBundle(bundle["envelope_id"], final.checkpoint, parsed, done, final.period, tuple(segments))
    origin = field(bundle, "origin", str)
    if expected_origin is not None and origin != expected_origin:
        raise LogError("Log.WrongOrigin", "bundle is for another log", origin=origin, expected=expected_origin)
    history = key_history_for(bundle, trusted_pem, keys)
    verifier, period = verifier_for(field(bundle, "key", dict), history)
    note = field(bundle, "checkpoint", str)
    checkpoint = verify_checkpoint(note, verifier, origin)
    token = bundle.get("timestamp_token")
    raw_token = b64decode_strict(token, "timestamp token") if isinstance(token, str) else None
    (trust or CheckpointTrust()).check_key(history, period, note, raw_token)
    envelope_id = field(bundle, "envelope_id", str)
    org_id = origin.rsplit("/", 1)[-1]
    entries = [included(item, checkpoint)[1] for item in field(bundle, "events", list)]
    if not entries and form == FORMAT_V1:
        raise LogError(MALFORMED, "bundle has no events")
    parsed = verify_chain(envelope_id, entries)
    if any(handed_to(value) is not None or value.get("type") == TRANSFER_ARRIVED.name for value in parsed):
        raise LogError(SEGMENT_MISSING, f"the chain crossed logs at a hand-off: only a {FORMAT_V3} bundle proves it")
    for item, value in zip(bundle["events"], parsed, strict=True):
        if value.get("index") != item["leaf_index"] or org_id != value.get("log"):
            raise LogError(
                INVALID_PROOF,
                "an entry names another position or log than it was proven at",
                leaf_index=item["leaf_index"],
            )
    completeness = None if form == FORMAT_V1 else _completeness(bundle, checkpoint, org_id, envelope_id, entries)
    return VerifiedBundle(envelope_id, checkpoint, parsed, completeness, period)
