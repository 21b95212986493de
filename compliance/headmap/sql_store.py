"""Keeping the head map in SQL and committing its root to the log at checkpoint time.

Rows are only added: ``map_leaf`` holds each changed head at the version (log size) that first mapped it,
``map_node`` each node a commit changed at that version, and ``map_root`` each committed root with the leaf index
of its ``map.root`` entry. A commit reads only the stored nodes on the changed paths and a proof at any version
reads one path (``stored_tree``), so neither rebuilds a map nor holds one in memory. The tables are a
convenience, not evidence: the evidence is the ``map.root`` entry in the signed log, which an auditor re-derives
from the entries, and a proof from a tampered node does not lead to that root.

Maps committed before ``map_node`` existed (migration 0020) are backfilled by their organisation's next commit;
until then a proof at one of their versions is rebuilt from the leaves (``_load``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from sqlalchemy import TextClause, text
from sqlmodel import Session, col, select

from compliance.headmap.sparse_tree import Head, HeadMap, MapProof, map_key, tree_id_for
from compliance.headmap.stored_tree import HeadReader, Node, NodeReader, apply, prove
from compliance.ledger.event_catalogue import MAP_ROOT
from compliance.ledger.events import Actor, append_event, lock_log
from storage.ids import utcnow
from storage.models import Event, MapLeaf, MapNode, MapRoot

_CHUNK = 100  # newest-row look-ups in one statement (SQLite allows 500 terms in a compound select)
ROOT = "1"
_Query = tuple[str, str, str]  # table, id column, columns read
_NODES: _Query = ("map_node", "node", "node, hash, leaf_key")
_LEAVES: _Query = ("map_leaf", "envelope_key", "envelope_key, seq, entry_hash")


def latest_map_root(session: Session, org_id: str) -> MapRoot | None:
    return session.exec(
        select(MapRoot).where(MapRoot.org_id == org_id).order_by(col(MapRoot.version).desc()).limit(1)
    ).first()


def map_root_ending(session: Session, org_id: str, checkpoint_size: int) -> MapRoot | None:
    """The map committed by the checkpoint's last entry, if that entry is a ``map.root``."""
    row = session.get(MapRoot, (org_id, checkpoint_size - 1))
    return row if row is not None and row.entry_index == checkpoint_size - 1 else None


@lru_cache(maxsize=8)
def _newest(table: str, column: str, fields: str, count: int) -> TextClause:
    """Per id, the row with the greatest version <= :version: one index seek each, in one round trip.

    Plain SQL, built once per size: SQLAlchemy would re-compile a hundred-part union on every call. The names
    come only from ``_NODES`` and ``_LEAVES``; every value is a bound parameter.
    """
    parts = [
        f"SELECT * FROM (SELECT {fields} FROM {table} WHERE org_id = :org AND {column} = :id{i} "  # noqa: S608
        f"AND version <= :version ORDER BY version DESC LIMIT 1) AS q{i}"
        for i in range(count)
    ]
    return text(" UNION ALL ".join(parts))


def _rows(session: Session, org_id: str, version: int, query: _Query, ids: list[str]) -> list[Any]:
    out: list[Any] = []
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        params: dict[str, object] = {f"id{i}": value for i, value in enumerate(chunk)}
        out += session.execute(_newest(*query, len(chunk)), params | {"org": org_id, "version": version}).all()
    return out


def node_reader(session: Session, org_id: str, version: int) -> NodeReader:
    """The map's nodes as of ``version``: per node, the newest row at or before it."""

    def read(heap_ids: Iterable[int]) -> Mapping[int, Node]:
        rows = _rows(session, org_id, version, _NODES, [f"{h:x}" for h in heap_ids])
        return {int(n, 16): Node(bytes.fromhex(h), None if k is None else int(k, 16)) for n, h, k in rows}

    return read


def head_reader(session: Session, org_id: str, version: int) -> HeadReader:
    """The heads the map held as of ``version``, from ``map_leaf``."""

    def read(keys: Iterable[int]) -> Mapping[int, Head]:
        rows = _rows(session, org_id, version, _LEAVES, [f"{k:064x}" for k in keys])
        return {int(k, 16): Head(seq, bytes.fromhex(h)) for k, seq, h in rows}

    return read


def _load(session: Session, org_id: str, version: int) -> HeadMap:
    """Rebuild the map as committed at ``version`` from its leaves, hashed through (O(n)): before a backfill."""
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
    """The map proof for ``envelope_id`` as committed at ``version``: one path of stored nodes, no lock taken."""
    if session.get(MapNode, (org_id, ROOT, version)) is None:  # committed before 0020 and not backfilled yet
        return _load(session, org_id, version).prove(map_key(envelope_id))
    return prove(map_key(envelope_id), node_reader(session, org_id, version), head_reader(session, org_id, version))


def insert_nodes(session: Session, org_id: str, version: int, nodes: Mapping[int, Node]) -> None:
    session.execute(
        MapNode.__table__.insert(),  # type: ignore[attr-defined]
        [
            {
                "org_id": org_id,
                "node": f"{heap:x}",
                "version": version,
                "hash": node.hash.hex(),
                "leaf_key": None if node.leaf_key is None else f"{node.leaf_key:064x}",
            }
            for heap, node in nodes.items()
        ],
    )


def backfill_nodes(session: Session, org_id: str, last: MapRoot) -> None:
    """Store the nodes of every version committed before ``map_node`` existed, replayed from ``map_leaf``.

    Once per organisation, under the append lock of the commit that finds them missing; every replayed root
    must equal the committed one, or nothing is stored.
    """
    if session.get(MapNode, (org_id, ROOT, last.version)) is not None:
        return
    tree_id = tree_id_for(org_id)
    nodes: dict[int, Node] = {}
    heads: dict[int, Head] = {}
    by_version: dict[int, dict[int, Head]] = {}
    for key, version, seq, entry_hash in session.execute(
        select(MapLeaf.envelope_key, MapLeaf.version, MapLeaf.seq, MapLeaf.entry_hash).where(MapLeaf.org_id == org_id)
    ):
        by_version.setdefault(version, {})[int(key, 16)] = Head(seq, bytes.fromhex(entry_hash))
    roots = session.exec(select(MapRoot).where(MapRoot.org_id == org_id).order_by(col(MapRoot.version))).all()
    for committed in roots:
        changes = by_version.get(committed.version, {})
        root, written = apply(
            tree_id,
            changes,
            lambda ids: {i: nodes[i] for i in ids if i in nodes},
            lambda keys: {k: heads[k] for k in keys},
        )
        if root.hex() != committed.root_hash:
            raise RuntimeError(f"the leaves of {org_id} at version {committed.version} give another map root")
        heads.update(changes)
        nodes.update(written)
        insert_nodes(session, org_id, committed.version, written)


def commit_head_map(session: Session, org_id: str) -> MapRoot | None:
    """In the caller's transaction: map the heads of every entry since the last commit and log the new root.

    Takes the organisation's append lock, so the ``map.root`` entry is the log's last entry until the caller
    commits; a checkpoint signed in the same transaction therefore ends with it. Reads only the stored nodes on
    the changed paths. Returns None if nothing was appended since the last commit.
    """
    size = lock_log(session, org_id)
    last = latest_map_root(session, org_id)
    if last is not None:
        backfill_nodes(session, org_id, last)
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
    root, written = apply(
        tree_id_for(org_id), changes, node_reader(session, org_id, since), head_reader(session, org_id, since)
    )
    session.add_all(changed_rows.values())
    insert_nodes(session, org_id, size, written)
    data: dict[str, Any] = {"map_root": root.hex(), "log_size_mapped": size, "version": size}
    entry = append_event(
        session, actor=Actor(org_id, source="head-map"), event_type=MAP_ROOT, occurred_at=utcnow(), data=data
    )
    row = MapRoot(org_id=org_id, version=size, root_hash=root.hex(), entry_index=entry.leaf_index)
    session.add(row)
    return row
