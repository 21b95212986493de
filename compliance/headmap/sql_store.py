"""Keeping the head map in SQL and committing its root to the log at checkpoint time.

Rows are only added: ``map_leaf`` holds each changed head at the version (log size) that first mapped it, and
``map_root`` each committed root with the leaf index of its ``map.root`` entry. Any past map is rebuilt from the
leaves as of its version; the newest map of each organisation stays in memory so that a checkpoint re-hashes
only the paths of the envelopes that changed since the last one. The tables are a convenience, not evidence:
the evidence is the ``map.root`` entry in the signed log, which an auditor re-derives from the entries.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from sqlalchemy import Engine
from sqlalchemy import event as sa_event
from sqlmodel import Session, col, select

from compliance.headmap.sparse_tree import Head, HeadMap, MapProof, map_key, tree_id_for
from compliance.ledger.event_catalogue import MAP_ROOT
from compliance.ledger.events import Actor, append_event, lock_log
from storage.ids import utcnow
from storage.models import Event, MapLeaf, MapRoot

_CACHED_MAPS = 4  # each holds every head of one organisation: a few hundred bytes per envelope
_cache: OrderedDict[tuple[str, str, int], HeadMap] = OrderedDict()
_cache_lock = threading.Lock()


def _cache_key(session: Session, org_id: str, version: int) -> tuple[str, str, int]:
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    return (str(engine.url), org_id, version)


def _remember(key: tuple[str, str, int], head_map: HeadMap) -> None:
    with _cache_lock:
        _cache[key] = head_map
        _cache.move_to_end(key)
        while len(_cache) > _CACHED_MAPS:
            _cache.popitem(last=False)


def latest_map_root(session: Session, org_id: str) -> MapRoot | None:
    return session.exec(
        select(MapRoot).where(MapRoot.org_id == org_id).order_by(col(MapRoot.version).desc()).limit(1)
    ).first()


def map_root_ending(session: Session, org_id: str, checkpoint_size: int) -> MapRoot | None:
    """The map committed by the checkpoint's last entry, if that entry is a ``map.root``."""
    row = session.get(MapRoot, (org_id, checkpoint_size - 1))
    return row if row is not None and row.entry_index == checkpoint_size - 1 else None


def _load(session: Session, org_id: str, version: int) -> HeadMap:
    """Rebuild the map as committed at ``version`` from its leaves, hashed through (O(n))."""
    heads: dict[int, Head] = {}
    rows = session.execute(
        select(MapLeaf.envelope_key, MapLeaf.seq, MapLeaf.entry_hash)
        .where(MapLeaf.org_id == org_id, col(MapLeaf.version) <= version)
        .order_by(col(MapLeaf.version))
    )
    for key, seq, entry_hash in rows:
        heads[int(key, 16)] = Head(seq, bytes.fromhex(entry_hash))
    head_map = HeadMap(tree_id_for(org_id), heads)
    head_map.root()
    return head_map


def prove_at(session: Session, org_id: str, version: int, envelope_id: str) -> MapProof:
    """The map proof for ``envelope_id`` as committed at ``version`` (cached map, or rebuilt from its leaves)."""
    key = _cache_key(session, org_id, version)
    with _cache_lock:  # held while proving: a commit takes a cached map out under this lock before changing it
        cached = _cache.get(key)
        if cached is not None:
            return cached.prove(map_key(envelope_id))
    loaded = _load(session, org_id, version)
    proof = loaded.prove(map_key(envelope_id))
    _remember(key, loaded)
    return proof


def commit_head_map(session: Session, org_id: str) -> MapRoot | None:
    """In the caller's transaction: map the heads of every entry since the last commit and log the new root.

    Takes the organisation's append lock, so the ``map.root`` entry is the log's last entry until the caller
    commits; a checkpoint signed in the same transaction therefore ends with it. Returns None if nothing was
    appended since the last commit.
    """
    size = lock_log(session, org_id)
    last = latest_map_root(session, org_id)
    if size == 0 or (last is not None and last.entry_index == size - 1):
        return None
    since = last.version if last is not None else 0
    changes: dict[int, Head] = {}
    changed_rows: dict[int, MapLeaf] = {}
    for envelope_id, seq, entry_hash in session.execute(
        select(Event.envelope_id, Event.chain_seq, Event.entry_hash)
        .where(Event.org_id == org_id, col(Event.leaf_index) >= since, col(Event.envelope_id).is_not(None))
        .order_by(col(Event.leaf_index))
    ):
        key = map_key(envelope_id)
        changes[key] = Head(seq, bytes.fromhex(entry_hash))
        changed_rows[key] = MapLeaf(
            org_id=org_id, envelope_key=f"{key:064x}", version=size, seq=seq, entry_hash=entry_hash
        )
    previous = _cache_key(session, org_id, since)
    with _cache_lock:
        head_map = _cache.pop(previous, None)  # taken out: a rollback must not leave a half-updated map cached
    if head_map is None:
        head_map = _load(session, org_id, since) if last is not None else HeadMap(tree_id_for(org_id))
    root = head_map.update(changes)
    session.add_all(changed_rows.values())
    data: dict[str, Any] = {"map_root": root.hex(), "log_size_mapped": size, "version": size}
    entry = append_event(
        session, actor=Actor(org_id, source="head-map"), event_type=MAP_ROOT, occurred_at=utcnow(), data=data
    )
    row = MapRoot(org_id=org_id, version=size, root_hash=root.hex(), entry_index=entry.leaf_index)
    session.add(row)
    new_key = _cache_key(session, org_id, size)
    sa_event.listen(session, "after_commit", lambda _s: _remember(new_key, head_map), once=True)
    return row
