"""Proof bundles of a history that crossed organisations: ``evault-proof-bundle/v3`` (docs/evidence-formats.md).

A transfer of control moves an envelope's chain into the receiver's log: ``transfer.completed`` (with
``next_log``) is its last entry in the transferor's log, a ``map.root`` right after it maps it as the
envelope's final head there, and ``transfer.arrived`` in the receiver's log names that entry (log, index, hash)
and links to it by ``prev``. A v3 bundle carries the whole chain in order, split into segments (a run of
entries in one log); for each log a signed checkpoint covering its segments; and for each segment a head-map
commit with its proof: a segment closed by a hand-off proves the hand-off was the envelope's head in that log
right after it, the last segment proves its last entry is the head at the checkpoint (the present). A bundle
whose last entry is a hand-off is the transferor's part: it proves the history up to the hand-off, no further.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from compliance.checkpoints.policy import CheckpointTrust
from compliance.checkpoints.publisher import latest_checkpoint, tree_for
from compliance.errors import Conflict
from compliance.headmap.sparse_tree import MapProof, map_key, tree_id_for, verify_map_proof
from compliance.headmap.sql_store import map_root_ending, prove_at
from compliance.ledger.chain import verify_chain
from compliance.ledger.checkpoint_format import Checkpoint, verify_checkpoint
from compliance.ledger.event_catalogue import TRANSFER_ARRIVED, TRANSFER_COMPLETED
from compliance.ledger.key_history import KeyHistory, KeyPeriod
from compliance.ledger.log_error import (
    HAND_OFF_BROKEN,
    INCOMPLETE,
    INVALID_PROOF,
    MALFORMED,
    SEGMENT_MISSING,
    LogError,
)
from compliance.ledger.note import b64decode_strict
from compliance.ledger.vault_key import VaultKey
from storage.models import Checkpoint as CheckpointRow
from storage.models import Event, MapRoot

FORMAT_V3 = "evault-proof-bundle/v3"


def handed_to(value: dict[str, Any]) -> str | None:
    """The log a ``transfer.completed`` entry hands the chain to, if it is a hand-off."""
    data = value.get("data")
    if value.get("type") != TRANSFER_COMPLETED.name or not isinstance(data, dict):
        return None
    target = data.get("next_log")
    return target if isinstance(target, str) else None


def _hands_off(event: Event) -> bool:
    return event.event_type == TRANSFER_COMPLETED.name and b'"next_log"' in event.entry


def crosses_logs(events: Sequence[Event]) -> bool:
    """Whether a chain's entries need v3: more than one log, or a hand-off out of its one log."""
    return len({e.org_id for e in events}) > 1 or any(_hands_off(e) for e in events)


def _segments(events: Sequence[Event]) -> list[list[Event]]:
    runs: list[list[Event]] = []
    for event in events:
        if runs and runs[-1][-1].org_id == event.org_id:
            runs[-1].append(event)
        else:
            runs.append([event])
    return runs


def _map_after(session: Session, org_id: str, leaf_index: int) -> MapRoot:
    """The first map commit of ``org_id`` after ``leaf_index`` (the one a hand-off writes right after itself)."""
    row = session.exec(
        select(MapRoot)
        .where(MapRoot.org_id == org_id, col(MapRoot.entry_index) > leaf_index)
        .order_by(col(MapRoot.entry_index))
        .limit(1)
    ).first()
    if row is None:
        raise Conflict("Log.MapNotCommitted", "no map commit follows the hand-off yet", log=org_id)
    return row


def _checkpoint_of(session: Session, org_id: str, covers: int, given: CheckpointRow) -> CheckpointRow:
    found = given if given.org_id == org_id else latest_checkpoint(session, org_id)
    if found is None or found.size < covers:
        raise Conflict("Log.NotCovered", "no signed checkpoint of the log covers the hand-off yet", log=org_id)
    return found


def build_v3(
    session: Session, key: VaultKey, envelope_id: str, checkpoint: CheckpointRow, events: Sequence[Event]
) -> dict[str, Any]:
    """The chain up to its last entry in ``checkpoint``'s log that the checkpoint's map covers, across logs."""
    from compliance.bundles.proof_bundle import proven, signing_key_of  # the v2 parts (which dispatch here)

    org_id = checkpoint.org_id
    committed = map_root_ending(session, org_id, checkpoint.size)
    if committed is None:
        raise Conflict("Log.MapNotCommitted", "the checkpoint does not end with a map commit", size=checkpoint.size)
    ends = [i for i, e in enumerate(events) if e.org_id == org_id and e.leaf_index < committed.version]
    shown = list(events[: ends[-1] + 1]) if ends else []
    segments = _segments(shown)
    maps: list[tuple[str, MapRoot]] = []
    for number, segment in enumerate(segments):
        last, log = segment[-1], segment[-1].org_id
        present = number == len(segments) - 1 and not _hands_off(last)
        maps.append((log, committed if present else _map_after(session, log, last.leaf_index)))
    needed: dict[str, int] = {}
    for log, root in maps:
        needed[log] = max(needed.get(log, 0), root.entry_index + 1)
    checkpoints = {log: _checkpoint_of(session, log, size, checkpoint) for log, size in needed.items()}
    trees = {log: tree_for(session, log, row.size) for log, row in checkpoints.items()}
    key_chain: list[str] = []
    logs = []
    for row in checkpoints.values():
        signed_by, chain = signing_key_of(session, key, row.note)
        key_chain = chain if len(chain) > len(key_chain) else key_chain
        logs.append(
            {
                "origin": _origin(row),
                "checkpoint": row.note,
                "key": signed_by,
                "timestamp_token": _token(row),
            }
        )
    origins = {log: _origin(row) for log, row in checkpoints.items()}

    def entry_at(log: str, index: int) -> Event:
        return session.exec(select(Event).where(Event.org_id == log, Event.leaf_index == index)).one()

    final = next(item for item in logs if item["origin"] == origins[org_id])
    return {
        "format": FORMAT_V3,
        "origin": origins[org_id],
        "envelope_id": envelope_id,
        # The final log's checkpoint, key and timestamp, repeated at the top as in v2 (a certificate names them).
        "checkpoint": final["checkpoint"],
        "key": final["key"],
        "timestamp_token": final["timestamp_token"],
        **({"key_chain": key_chain} if key_chain else {}),
        "logs": logs,
        "events": [{"log": origins[e.org_id], **proven(trees[e.org_id], checkpoints[e.org_id].size, e)} for e in shown],
        "segments": [
            {
                "log": origins[log],
                "first_seq": segment[0].chain_seq,
                "last_seq": segment[-1].chain_seq,
                "map": {
                    "entry": proven(trees[log], checkpoints[log].size, entry_at(log, root.entry_index)),
                    "proof": prove_at(session, log, root.version, envelope_id).as_json(),
                },
            }
            for segment, (log, root) in zip(segments, maps, strict=True)
        ],
    }


def _origin(row: CheckpointRow) -> str:
    return Checkpoint.parse(row.note.split("\n\n", 1)[0] + "\n").origin


def _token(row: CheckpointRow) -> str | None:
    return base64.b64encode(row.timestamp_token).decode() if row.timestamp_token else None


# --- verification ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One run of the chain in one log, as proven: its seqs and the head its map commit names there."""

    origin: str
    first_seq: int
    last_seq: int
    checkpoint_size: int
    map_version: int
    handed_to: str | None  # the organisation whose log takes the chain over after this segment, if any


@dataclass(frozen=True)
class VerifiedLog:
    checkpoint: Checkpoint
    period: KeyPeriod


def _logs(bundle: dict[str, Any], history: KeyHistory, trust: CheckpointTrust) -> dict[str, VerifiedLog]:
    from compliance.bundles.proof_bundle import field, verifier_for

    verified: dict[str, VerifiedLog] = {}
    items = field(bundle, "logs", list)
    prefixes = set()
    for item in items:
        origin = field(item, "origin", str)
        if origin in verified:
            raise LogError(MALFORMED, "a log is listed twice", origin=origin)
        verifier, period = verifier_for(field(item, "key", dict), history)
        note = field(item, "checkpoint", str)
        checkpoint = verify_checkpoint(note, verifier, origin)
        token = item.get("timestamp_token")
        trust.check_key(
            history, period, note, b64decode_strict(token, "timestamp token") if isinstance(token, str) else None
        )
        verified[origin] = VerifiedLog(checkpoint, period)
        prefixes.add(origin.rsplit("/", 1)[0])
    if len(prefixes) > 1:
        raise LogError(MALFORMED, "the bundle's logs belong to different vaults", origins=sorted(verified))
    return verified


def link(before: dict[str, Any], raw_before: bytes, after: dict[str, Any]) -> None:
    """Where the chain changes log: a hand-off to exactly that log, and an arrival naming exactly that entry."""
    target = handed_to(before)
    data = after.get("data") if isinstance(after.get("data"), dict) else {}
    assert isinstance(data, dict)
    before_data = before.get("data") if isinstance(before.get("data"), dict) else {}
    assert isinstance(before_data, dict)
    if (
        target != after.get("log")
        or before_data.get("controller") != target
        or after.get("type") != TRANSFER_ARRIVED.name
        or data.get("log") != before.get("log")
        or data.get("leaf_index") != before.get("index")
        or data.get("entry_hash") != hashlib.sha256(raw_before).hexdigest()
        or data.get("transfer_id") != before_data.get("transfer_id")
    ):
        raise LogError(
            HAND_OFF_BROKEN,
            "the chain changes log without a hand-off of control to that log and an arrival naming it",
            seq=after.get("seq"),
        )


def verify_v3(
    bundle: dict[str, Any], history: KeyHistory, trust: CheckpointTrust, expected_origin: str | None
) -> tuple[list[dict[str, Any]], list[Segment], VerifiedLog, int | None]:
    """The chain across logs, its segments, the final log and the head seq its map proves (None: handed off)."""
    from compliance.bundles.proof_bundle import field, included, map_commit

    origin = field(bundle, "origin", str)
    if expected_origin is not None and origin != expected_origin:
        raise LogError("Log.WrongOrigin", "bundle is for another log", origin=origin, expected=expected_origin)
    envelope_id = field(bundle, "envelope_id", str)
    logs = _logs(bundle, history, trust)
    final = next((item for item in bundle["logs"] if item.get("origin") == origin), None)
    if final is None:
        raise LogError(SEGMENT_MISSING, "the bundle carries no checkpoint of the log it ends in", origin=origin)
    if any(bundle.get(name) != final.get(name) for name in ("checkpoint", "key", "timestamp_token")):
        raise LogError(MALFORMED, "the top-level checkpoint is not the final log's", origin=origin)
    items = field(bundle, "events", list)
    if not items:
        raise LogError(MALFORMED, "a v3 bundle shows the chain; it has no events")
    raw: list[bytes] = []
    where: list[str] = []
    for item in items:
        log = field(item, "log", str)
        if log not in logs:
            raise LogError(SEGMENT_MISSING, "an entry is proven in a log the bundle carries no checkpoint of", log=log)
        raw.append(included(item, logs[log].checkpoint)[1])
        where.append(log)
    parsed = verify_chain(envelope_id, raw)
    for item, value, log in zip(items, parsed, where, strict=True):
        if value.get("index") != item["leaf_index"] or value.get("log") != log.rsplit("/", 1)[-1]:
            raise LogError(
                INVALID_PROOF, "an entry names another position or log than it was proven at", seq=value.get("seq")
            )
    for i in range(1, len(parsed)):
        moved = where[i] != where[i - 1]
        if moved:
            link(parsed[i - 1], raw[i - 1], parsed[i])
        elif handed_to(parsed[i - 1]) is not None or parsed[i].get("type") == TRANSFER_ARRIVED.name:
            raise LogError(HAND_OFF_BROKEN, "the chain goes on in a log it was handed out of", seq=i)
    if where[-1] != origin:
        raise LogError(
            SEGMENT_MISSING, "the chain goes on in a log this bundle leaves out", last_log=where[-1], origin=origin
        )
    runs: list[tuple[int, int]] = []
    for i in range(len(parsed)):
        if i == 0 or where[i] != where[i - 1]:
            runs.append((i, i))
        else:
            runs[-1] = (runs[-1][0], i)
    parts = field(bundle, "segments", list)
    if len(parts) != len(runs):
        raise LogError(
            SEGMENT_MISSING, "the bundle proves another number of segments than its chain has", runs=len(runs)
        )
    segments: list[Segment] = []
    head_seq: int | None = None
    for number, ((first, last), part) in enumerate(zip(runs, parts, strict=True)):
        log = where[first]
        if field(part, "log", str) != log or part.get("first_seq") != first or part.get("last_seq") != last:
            raise LogError(SEGMENT_MISSING, "a segment is missing or misplaced", seq=first, log=log)
        checkpoint = logs[log].checkpoint
        target = handed_to(parsed[last])
        final = number == len(runs) - 1
        org_id = log.rsplit("/", 1)[-1]
        mapped = field(part, "map", dict)
        version, root = map_commit(field(mapped, "entry", dict), checkpoint, org_id, last=final and target is None)
        if any(items[i]["leaf_index"] >= version for i in range(first, last + 1)):
            raise LogError(INVALID_PROOF, "the segment shows entries its map commit does not cover", version=version)
        head = verify_map_proof(
            tree_id_for(org_id), map_key(envelope_id), MapProof.from_json(mapped.get("proof")), root
        )
        if head is None:
            raise LogError(INVALID_PROOF, "the map proves the envelope absent, yet the segment shows its entries")
        if final and target is None and head.seq > last:
            raise LogError(
                INCOMPLETE, "the history is cut off: the map names a later head", head_seq=head.seq, last_shown=last
            )
        if head.seq != last or head.entry_hash != hashlib.sha256(raw[last]).digest():
            raise LogError(
                INVALID_PROOF, "the map's head in this log is not the segment's last entry", log=log, head_seq=head.seq
            )
        if not final and target is None:
            raise LogError(HAND_OFF_BROKEN, "a segment ends without a hand-off", log=log, seq=last)
        segments.append(Segment(log, first, last, checkpoint.size, version, target))
        if final:
            head_seq = None if target is not None else head.seq
    return parsed, segments, logs[origin], head_seq
