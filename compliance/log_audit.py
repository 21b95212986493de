"""Re-deriving an organisation's ledger from its raw entries and comparing it with what WORM holds.

The database alone is not trusted: every entry is re-hashed, every envelope chain re-linked, every root
recomputed and compared with the checkpoints signed into the WORM bucket. Findings are collected, never
stopped at the first (Tessera's fsck), so one report names every fault.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import col, select

from compliance.ledger.chain import parse_entry, verify_chain
from compliance.ledger.checkpoint import verify_checkpoint
from compliance.ledger.checkpoints import tree_for
from compliance.ledger.errors import LogError
from compliance.ledger.events import log_size
from compliance.ledger.head_map import Head, HeadMap, map_key, tree_id_for
from compliance.ledger.map_store import MAP_ROOT_EVENT
from compliance.ledger.merkle import leaf_hash, root_from_leaf_hashes
from compliance.sources import Sources
from storage.keys import checkpoint_key
from storage.models import Checkpoint as CheckpointRow
from storage.models import Event


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def _worm_notes(sources: Sources, org_id: str) -> dict[int, str]:
    prefix = checkpoint_key(org_id, 0).rsplit("/", 1)[0] + "/"
    notes: dict[int, str] = {}
    paginator = sources.authoritative.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=sources.authoritative.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            name = obj["Key"].rsplit("/", 1)[1]
            if name.isdigit():
                head = sources.authoritative.head(obj["Key"], None)
                notes[int(name)] = sources.authoritative.read(obj["Key"], head.version_id).decode()
    return notes


def _map_findings(org_id: str, events: list[Event]) -> list[Finding]:
    """Re-derive the head map from the entries and compare every committed ``map.root`` with it."""
    findings: list[Finding] = []
    head_map, pending = HeadMap(tree_id_for(org_id)), dict[int, Head]()
    for event in events:
        try:
            value = parse_entry(event.entry)
        except LogError:
            continue  # reported as an edited entry or a broken chain
        envelope, seq, data = value.get("envelope"), value.get("seq"), value.get("data")
        if isinstance(envelope, str) and isinstance(seq, int):
            pending[map_key(envelope)] = Head(seq, hashlib.sha256(event.entry).digest())
        elif value.get("type") == MAP_ROOT_EVENT and envelope is None:
            expected = head_map.update(pending)
            pending = {}
            claimed = data.get("map_root") if isinstance(data, dict) else None
            version = data.get("version") if isinstance(data, dict) else None
            if claimed != expected.hex() or version != event.leaf_index:
                findings.append(
                    Finding(
                        "Map.RootMismatch",
                        "a committed head-map root is not the map the entries before it produce",
                        {"leaf_index": event.leaf_index, "claimed": claimed, "derived": expected.hex()},
                    )
                )
    return findings


def audit_log(sources: Sources, org_id: str) -> list[Finding]:
    findings: list[Finding] = []
    with sources.db.read_session() as session:
        events = list(session.exec(select(Event).where(Event.org_id == org_id).order_by(col(Event.leaf_index))))
        size = log_size(session, org_id)
        stored_leaves = tree_for(session, org_id, size).leaf_hashes(0, size) if size else []
        rows = {r.size: r for r in session.exec(select(CheckpointRow).where(CheckpointRow.org_id == org_id))}
    if [e.leaf_index for e in events] != list(range(size)):
        findings.append(
            Finding(
                "Log.EntriesMissing",
                "leaf indexes are not 0..size-1: entries deleted or inserted",
                {"size": size, "events": len(events)},
            )
        )
    leaves = [leaf_hash(e.entry) for e in events]
    for event, leaf, stored in zip(events, leaves, stored_leaves, strict=False):
        if hashlib.sha256(event.entry).hexdigest() != event.entry_hash or leaf != stored:
            findings.append(
                Finding(
                    "Log.EntryEdited",
                    "an entry no longer hashes to its leaf",
                    {"leaf_index": event.leaf_index, "envelope_id": event.envelope_id},
                )
            )
    chains: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        if event.envelope_id:
            chains[event.envelope_id].append(event)
    for envelope_id, chain in chains.items():
        try:
            verify_chain(envelope_id, [e.entry for e in sorted(chain, key=lambda e: e.chain_seq or 0)])
        except LogError as exc:
            findings.append(Finding(exc.code, exc.message, {"envelope_id": envelope_id, **exc.details}))
    findings.extend(_map_findings(org_id, events))
    worm = _worm_notes(sources, org_id)
    verifier = sources.checkpoint_verifier
    for cp_size in sorted(set(worm) | set(rows)):
        note = worm.get(cp_size)
        if note is None:
            findings.append(
                Finding("Checkpoint.MissingInWorm", "a database checkpoint has no WORM copy", {"size": cp_size})
            )
            continue
        try:
            checkpoint = verify_checkpoint(note, verifier, sources.origin(org_id))
        except LogError as exc:
            findings.append(Finding(exc.code, f"WORM checkpoint: {exc.message}", {"size": cp_size}))
            continue
        row = rows.get(cp_size)
        if row is None or row.note != note:
            findings.append(
                Finding("Checkpoint.Mismatch", "the database checkpoint differs from the WORM one", {"size": cp_size})
            )
        if cp_size > len(leaves) or root_from_leaf_hashes(leaves[:cp_size]) != checkpoint.root_hash:
            findings.append(
                Finding("Log.RootMismatch", "the entries no longer produce the signed root", {"size": cp_size})
            )
    return findings
