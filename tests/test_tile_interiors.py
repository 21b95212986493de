"""Stored tile interiors (migration 0021): written with every tile, read by proofs, never trusted blindly.

A proof slices its hashes from the interiors; an interior that its own bottom row does not produce is named by
the verifier's audit (``Log.TileEdited``), and the proofs it yields fail against the honest root. A tile without
one (a row from before 0021) or with one of the wrong length has it recomputed from its row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Collection, Iterator, Mapping
from typing import Any

import pytest
from sqlalchemy import text

from compliance.ledger.events import Actor, entry_bytes
from compliance.ledger.log_error import LogError
from compliance.ledger.merkle import leaf_hash, root_from_leaf_hashes, verify_inclusion
from compliance.ledger.tiles import MemoryTileStore, TiledTree, TileKey, interior_of
from compliance.sources import Sources
from compliance.verifier import audit_log
from storage.db import Database
from storage.log_tiles import SqlTileStore, Tile
from storage.models import Event, LogState, Organisation

ORG = "org_tiles000000000000000"
N = 600  # three level-0 tiles, the last one partial


class _NoCheckpoints:
    def list_entries(self, prefix: str) -> Iterator[Any]:
        return iter(())


class CountingStore(MemoryTileStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[int] = []

    def read_tiles(self, keys: Collection[TileKey]) -> dict[TileKey, Tile]:
        self.reads.append(len(keys))
        return super().read_tiles(keys)

    def write_tiles(self, tiles: Mapping[TileKey, Tile]) -> None:
        super().write_tiles(tiles)


def _events(n: int) -> list[Event]:
    """Organisation events as the service appends them (no envelope, so no chains or envelope rows)."""
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    out = []
    for i in range(n):
        entry = entry_bytes(
            org_id=ORG,
            leaf_index=i,
            envelope_id=None,
            chain_seq=None,
            prev=None,
            event_type="org.created",
            occurred_at=at,
            actor=Actor(ORG, key_id="key_tiles", key_prefix="lk_tiles"),
            data={"name": f"tiles {i}"},
        )
        out.append(
            Event(
                org_id=ORG,
                leaf_index=i,
                event_type="org.created",
                occurred_at=at,
                entry=entry,
                entry_hash=hashlib.sha256(entry).hexdigest(),
            )
        )
    return out


@pytest.fixture
def log(database_url: str) -> Iterator[tuple[Database, list[bytes]]]:
    db = Database(database_url)
    db.migrate()
    events = _events(N)
    with db.session() as session:
        session.add(Organisation(id=ORG, name="tiles", created_at=dt.datetime.now(dt.UTC)))
    with db.session() as session:
        session.execute(Event.__table__.insert(), [e.model_dump(exclude={"id"}) for e in events])  # type: ignore[attr-defined]
        session.execute(LogState.__table__.insert(), [{"org_id": ORG, "size": N}])  # type: ignore[attr-defined]
        tree = TiledTree(SqlTileStore(session, ORG), 0)
        for start in range(0, N, 250):  # partial tiles grow across appends
            tree.append([leaf_hash(e.entry) for e in events[start : start + 250]])
    yield db, [leaf_hash(e.entry) for e in events]
    db.dispose()


def _findings(db: Database) -> list[str]:
    sources = Sources(db, _NoCheckpoints(), _NoCheckpoints(), None, "tiles")  # type: ignore[arg-type]
    return [f.code for f in audit_log(sources, ORG)]


def _proofs_verify(db: Database, leaves: list[bytes]) -> bool:
    root = root_from_leaf_hashes(leaves)
    with db.read_session() as session:
        tree = TiledTree(SqlTileStore(session, ORG), N)
        try:
            for index in (0, 1, 2, 255, 256, 258, 300, 511, 512, N - 1):
                verify_inclusion(leaves[index], index, N, tree.inclusion_proof(index, N), root)
        except LogError:
            return False
    return tree.root() == root


def test_every_tile_is_stored_with_the_interior_its_row_implies(log: tuple[Database, list[bytes]]) -> None:
    db, leaves = log
    with db.read_session() as session:
        rows = session.execute(text("SELECT level, idx, hashes, interior FROM log_tile")).all()
    assert {(level, idx) for level, idx, _, _ in rows} == {(0, 0), (0, 1), (0, 2), (1, 0)}
    for _, _, hashes, interior in rows:
        assert bytes(interior) == interior_of(bytes(hashes))
    assert _proofs_verify(db, leaves) and _findings(db) == []


def test_an_edited_interior_is_named_and_its_proofs_fail(log: tuple[Database, list[bytes]]) -> None:
    db, leaves = log
    with db.session() as session:  # the row's hashes stay: only the interior lies (the tile guard allows it)
        interior = bytes(
            session.execute(text("SELECT interior FROM log_tile WHERE level = 0 AND idx = 0")).scalar_one()
        )
        forged = bytes(32) + interior[32:]  # the parent of leaves 0 and 1: in the proofs of leaves 2 and 3
        session.execute(text("UPDATE log_tile SET interior = :i WHERE level = 0 AND idx = 0"), {"i": forged})
    assert not _proofs_verify(db, leaves)
    assert _findings(db) == ["Log.TileEdited"]


@pytest.mark.parametrize("stored", [None, b"", bytes(64)], ids=["null", "empty", "wrong-length"])
def test_a_tile_without_a_usable_interior_has_it_recomputed(
    log: tuple[Database, list[bytes]], stored: bytes | None
) -> None:
    """A row written before 0021 (NULL), or by a writer that kept no interior, still proves: from its row."""
    db, leaves = log
    with db.session() as session:
        session.execute(text("UPDATE log_tile SET interior = :i WHERE level = 0 AND idx = 1"), {"i": stored})
    assert _proofs_verify(db, leaves)
    assert _findings(db) == ([] if not stored else ["Log.TileEdited"])


def test_a_cold_proof_is_one_read_and_slices_its_hashes() -> None:
    """One store read per cold proof; with the interiors present no tile is recomputed (an empty interior in the
    store would be recomputed: poisoning the stored ones shows they are the ones read)."""
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(70_000)]
    store = CountingStore()
    TiledTree(store, 0).append(leaves)
    root = root_from_leaf_hashes(leaves)
    for index in (0, 12_345, 65_535, 65_536, 69_999):
        store.reads.clear()
        proof = TiledTree(store, len(leaves)).inclusion_proof(index, len(leaves))
        assert len(store.reads) == 1
        verify_inclusion(leaves[index], index, len(leaves), proof, root)
    key = (0, 12_345 >> 8)
    tile = store.tiles[key]
    store.tiles[key] = Tile(tile.hashes, bytes(len(tile.interior)))
    poisoned = TiledTree(store, len(leaves)).inclusion_proof(12_345, len(leaves))
    with pytest.raises(LogError):
        verify_inclusion(leaves[12_345], 12_345, len(leaves), poisoned, root)
