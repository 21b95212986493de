"""The process's cache of committed tiles (``storage.shared_tiles``): what it spares and what it must never hold.

A request's tree (``tree_for``) takes tiles from it, so a second request reads nothing it already read: shown by
editing a row under it (an edit the auditor's own tree, which reads the database, still sees). A session that
wrote tiles neither uses nor fills it, so a rolled-back append never reaches another request; a partial tile kept
narrow is read again once a wider one is asked for. On both databases.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from compliance.checkpoints.publisher import tree_for
from compliance.ledger.log_error import LogError
from compliance.ledger.merkle import root_from_leaf_hashes, verify_inclusion
from compliance.ledger.tiles import TiledTree
from storage.db import Database
from storage.log_tiles import SqlTileStore, Tile
from storage.models import Organisation
from storage.shared_tiles import SharedTiles

ORG = "org_shared00000000000000"
N = 600  # three level-0 tiles, the last one partial, under one partial level-1 tile
INDICES = (0, 2, 255, 256, 300, 511, 512, N - 1)


def _hashes(n: int, salt: bytes = b"") -> list[bytes]:
    return [hashlib.sha256(salt + i.to_bytes(8, "big")).digest() for i in range(n)]


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.migrate()
    with database.session() as session:
        session.add(Organisation(id=ORG, name="shared", created_at=dt.datetime.now(dt.UTC)))
    yield database
    database.dispose()


def _append(db: Database, leaves: list[bytes], size: int) -> None:
    with db.session() as session:
        TiledTree(SqlTileStore(session, ORG), size).append(leaves)


def _requests_verify(db: Database, leaves: list[bytes], size: int, *, shared: bool = True, write: bool = False) -> bool:
    """Each index's proof from a new tree, as one request each makes it; all verify against the honest root.
    ``write``: in write sessions (on SQLite another engine than the read sessions', so another cache)."""
    root = root_from_leaf_hashes(leaves[:size])
    with db.session() if write else db.read_session() as session:
        try:
            for index in INDICES:
                if index < size:
                    tree = tree_for(session, ORG, size) if shared else TiledTree(SqlTileStore(session, ORG), size)
                    verify_inclusion(leaves[index], index, size, tree.inclusion_proof(index, size), root)
        except LogError:
            return False
        return tree_for(session, ORG, size).root() == root


def test_a_second_request_reads_no_tile_the_first_read(db: Database) -> None:
    leaves = _hashes(N)
    _append(db, leaves, 0)
    assert _requests_verify(db, leaves, N)
    with db.session() as session:  # the parent of leaves 0 and 1, in the proofs of leaves 2 and 3, forged
        interior = bytes(
            session.execute(text("SELECT interior FROM log_tile WHERE level = 0 AND idx = 0")).scalar_one()
        )
        session.execute(
            text("UPDATE log_tile SET interior = :i WHERE level = 0 AND idx = 0"), {"i": bytes(32) + interior[32:]}
        )
    assert _requests_verify(db, leaves, N)  # the requests' trees answer from the tiles kept in memory
    assert not _requests_verify(db, leaves, N, shared=False)  # a tree that reads the database sees the edit


def test_a_session_that_wrote_tiles_neither_uses_nor_fills_the_cache(db: Database) -> None:
    leaves, undone = _hashes(N), _hashes(N, b"undone")
    _append(db, leaves[:300], 0)
    for write in (False, True):
        assert _requests_verify(db, leaves, 300, write=write)  # tiles (0, 1) and (1, 0) kept partial
    with db.session() as session:
        TiledTree(SqlTileStore(session, ORG), 300).append(undone[300:])
        tree = tree_for(session, ORG, N)  # reads its own uncommitted tiles: it must not keep them
        assert tree.root() == root_from_leaf_hashes(leaves[:300] + undone[300:])
        assert tree.inclusion_proof(256, N)
        session.rollback()
    _append(db, leaves[300:], 300)
    for write in (False, True):
        assert _requests_verify(db, leaves, N, write=write)


def test_a_partial_tile_kept_narrow_is_read_again_when_grown(db: Database) -> None:
    leaves = _hashes(N + 100)
    _append(db, leaves[:N], 0)
    assert _requests_verify(db, leaves, N)
    _append(db, leaves[N:], N)
    assert _requests_verify(db, leaves, N + 100)
    assert _requests_verify(db, leaves, N)  # the older size from the grown tiles


@pytest.mark.once
def test_bounded_and_only_ever_widened() -> None:
    shared = SharedTiles(tiles=2, edges=1)
    narrow, wide = Tile(bytes(64), bytes(32)), Tile(bytes(96), bytes(64))
    shared.keep("org", {(0, 0): wide})
    shared.keep("org", {(0, 0): narrow})  # a narrower copy never replaces a wider one
    assert shared.tiles("org", {(0, 0): 3}) == {(0, 0): wide}
    assert shared.tiles("org", {(0, 0): 4}) == {}  # not wide enough
    assert shared.tiles("other", {(0, 0): 1}) == {}  # another organisation's log
    shared.keep("org", {(0, 1): narrow, (0, 2): narrow})  # the least recently used goes
    assert shared.tiles("org", {(0, 0): 1, (0, 1): 1, (0, 2): 1}) == {(0, 1): narrow, (0, 2): narrow}
    shared.keep_edge("org", 4, 6, b"a")
    shared.keep_edge("org", 8, 9, b"b")
    assert (shared.edge("org", 4, 6), shared.edge("org", 8, 9)) == (None, b"b")


@pytest.mark.once
def test_the_default_bound_holds_every_bottom_tile_of_a_million_entry_log() -> None:
    """Proofs ask for leaves uniformly, so the hit rate is the share of bottom tiles kept: at 1,024 a log of
    10^6 entries (3,907 bottom tiles) read a tile for three proofs in four, however warm the process."""
    shared = SharedTiles()
    bottom, tile = -(-1_000_000 // 256), Tile(bytes(32), b"")
    for idx in range(bottom):
        shared.keep("org", {(0, idx): tile})
    for level, idx in [(2, 0), *((1, i) for i in range(16))]:  # the upper levels, on every proof's path
        shared.keep("org", {(level, idx): tile})
    assert len(shared.tiles("org", {(0, idx): 1 for idx in range(bottom)})) == bottom
