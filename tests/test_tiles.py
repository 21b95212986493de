"""TiledTree: roots and proofs across tile boundaries and historic sizes, against pymerkle; its I/O cost."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path

import pymerkle
import pytest

from compliance.ledger.log_error import CORRUPT, INVALID_PROOF, MALFORMED, ROLLED_BACK, LogError
from compliance.ledger.merkle import (
    EMPTY_ROOT,
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from compliance.ledger.tiles import MemoryTileStore, TiledTree, TileKey, interior_of
from storage.db import Database
from storage.log_tiles import SqlTileStore, Tile
from storage.models import Organisation

pytestmark = pytest.mark.once  # independent of the database under test: the SQLite pass only


def _hashes(n: int, salt: bytes = b"") -> list[bytes]:
    return [hashlib.sha256(salt + i.to_bytes(8, "big")).digest() for i in range(n)]


class CountingStore(MemoryTileStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[int] = []
        self.writes: list[int] = []

    def read_tiles(self, keys: Collection[TileKey]) -> dict[TileKey, Tile]:
        self.reads.append(len(keys))
        return super().read_tiles(keys)

    def write_tiles(self, tiles: Mapping[TileKey, Tile]) -> None:
        self.writes.append(len(tiles))
        super().write_tiles(tiles)


def _check_tree(tree: TiledTree, hashes: list[bytes], rng: random.Random, sizes: list[int]) -> None:
    roots = {s: tree.root(s) for s in sizes}
    for s in sizes:
        assert roots[s] == root_from_leaf_hashes(hashes[:s]), s
        for index in {0, s - 1, rng.randrange(s)} if s else ():
            verify_inclusion(hashes[index], index, s, tree.inclusion_proof(index, s), roots[s])
        for s1 in sizes:
            if s1 <= s:
                verify_consistency(s1, s, tree.consistency_proof(s1, s), roots[s1], roots[s])


def test_against_pymerkle() -> None:
    """pymerkle (security mode: 0x00/0x01 prefixes, RFC 9162) builds the same roots and inclusion paths."""
    rng = random.Random(1)
    for _ in range(25):
        n = rng.randint(1, 300)
        entries = [rng.randbytes(rng.randint(0, 40)) for _ in range(n)]
        hashes = [leaf_hash(e) for e in entries]
        ref = pymerkle.InmemoryTree.init_from_entries(entries)
        assert ref.security
        tree = TiledTree(MemoryTileStore(), 0)
        done = 0
        while done < n:
            k = rng.randint(1, 100)
            tree.append(hashes[done : done + k])
            done = min(n, done + k)
        assert tree.size == n
        for _ in range(20):
            size = rng.randint(1, n)
            index = rng.randrange(size)
            root = tree.root(size)
            assert root == ref.get_root(size)
            ours = tree.inclusion_proof(index, size)
            verify_inclusion(hashes[index], index, size, ours, root)
            theirs = ref.prove_inclusion(index + 1, size)
            assert theirs.path == [hashes[index], *ours]
            pymerkle.verify_inclusion(hashes[index], root, theirs)
            size1 = rng.randint(1, size)
            root1 = tree.root(size1)
            ours = tree.consistency_proof(size1, size)
            verify_consistency(size1, size, ours, root1, root)
            theirs_c = ref.prove_consistency(size1, size)
            # pymerkle's consistency path is its own format (not RFC 9162's list): it must hold for our roots.
            pymerkle.verify_consistency(root1, root, theirs_c)
            assert theirs_c.retrieve_prior_state() == root1


@pytest.mark.parametrize("batch", [1000, 4096])
def test_tile_boundaries_and_historic_sizes(batch: int) -> None:
    rng = random.Random(batch)
    hashes = _hashes(65537 + 300)
    store = MemoryTileStore()
    tree = TiledTree(store, 0)
    edges = [0, 1, 255, 256, 257, 511, 512, 65535, 65536, 65537]
    for size in [*range(0, 65537, batch), 65537]:
        tree.append(hashes[tree.size : size])
    tree.append(hashes[tree.size : tree.size + 255])
    for size in (65535, 65536, 65537, 65537 + 255):
        assert tree.root(size) == root_from_leaf_hashes(hashes[:size])
    _check_tree(tree, hashes, rng, edges)
    # A fresh instance over the same store (cold cache) sees the same tree at every historic size.
    _check_tree(TiledTree(store, tree.size), hashes, rng, [*edges, tree.size])
    assert tree.leaf_hashes(250, 65540) == hashes[250:65540]


def test_small_appends_one_by_one() -> None:
    hashes = _hashes(600)
    tree = TiledTree(MemoryTileStore(), 0)
    for i, hsh in enumerate(hashes):
        assert tree.append([hsh]) == i + 1
        assert tree.root() == root_from_leaf_hashes(hashes[: i + 1])
    _check_tree(tree, hashes, random.Random(3), [1, 2, 3, 255, 256, 257, 513, 600])


def test_append_cost_is_logarithmic() -> None:
    store = CountingStore()
    TiledTree(store, 0).append(_hashes(70_000))
    more = _hashes(600, b"more")
    tree = TiledTree(store, 70_000)  # cold cache: a new request
    store.reads.clear()
    store.writes.clear()
    tree.append(more[:1])
    assert store.reads == [3]  # one query: the right-edge partial tile of each of the three levels
    assert store.writes == [1]
    for i in range(1, 600):
        tree.append(more[i : i + 1])
    assert store.reads == [3]  # later appends use the cached right edge
    assert max(store.writes) <= 3
    assert tree.root() == root_from_leaf_hashes(_hashes(70_000) + more)


def test_proofs_use_cache() -> None:
    store = CountingStore()
    TiledTree(store, 0).append(_hashes(5000))
    tree = TiledTree(store, 5000)
    store.reads.clear()
    for _ in range(3):
        for i in range(0, 5000, 97):
            tree.inclusion_proof(i, 5000)
    assert len(store.reads) <= 5000 // 97 + 1 and sum(store.reads) <= 5000 // 256 + 3


def test_stale_instance_stays_correct_after_another_appends() -> None:
    """A partial tile cached at size n is only a prefix once the log grows: it must not be taken as grown."""
    hashes = _hashes(1000)
    store = MemoryTileStore()
    TiledTree(store, 0).append(hashes[:300])
    old = TiledTree(store, 300)
    root300 = old.root()
    TiledTree(store, 300).append(hashes[300:1000])
    newer = TiledTree(store, 1000)
    assert old.root() == root300 == newer.root(300)
    verify_consistency(300, 1000, newer.consistency_proof(300, 1000), root300, newer.root())
    grown = TiledTree(store, 300)
    grown.root()  # caches the partial tile at width 44
    grown._size = 1000  # as if told the new size: wider requests must reread
    assert grown.root() == newer.root() == root_from_leaf_hashes(hashes)


def test_argument_and_store_errors() -> None:
    store = MemoryTileStore()
    tree = TiledTree(store, 0)
    assert tree.root() == EMPTY_ROOT and tree.consistency_proof(0, 0) == []
    tree.append(_hashes(10))
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: tree.inclusion_proof(10, 10), INVALID_PROOF),
        (lambda: tree.inclusion_proof(0, 11), INVALID_PROOF),
        (lambda: tree.root(11), INVALID_PROOF),
        (lambda: tree.consistency_proof(5, 4), ROLLED_BACK),
        (lambda: tree.append([b"short"]), MALFORMED),
        (lambda: TiledTree(MemoryTileStore(), 10).root(), CORRUPT),  # tile missing from the store
    ]
    for call, code in cases:
        with pytest.raises(LogError) as info:
            call()
        assert info.value.code == code
    store.tiles[(0, 0)] = Tile(store.tiles[(0, 0)].hashes[:-1], store.tiles[(0, 0)].interior)
    with pytest.raises(LogError):
        TiledTree(store, 10).root()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'log.db'}")
    database.migrate()
    with database.session() as session:
        for org in ("org_a", "org_b"):
            session.add(Organisation(id=org, name=org, created_at=dt.datetime.now(dt.UTC)))
    yield database
    database.dispose()


def test_sql_tile_store(db: Database) -> None:
    hashes = _hashes(1300)
    with db.session() as session:
        store = SqlTileStore(session, "org_a")
        assert store.read_tiles([(0, 0)]) == {}
        tree = TiledTree(store, 0)
        tree.append(hashes[:700])
        tree.append(hashes[700:1000])
        TiledTree(SqlTileStore(session, "org_b"), 0).append(_hashes(3, b"b"))
    with db.session() as session:
        tree = TiledTree(SqlTileStore(session, "org_a"), 1000)
        assert tree.root() == root_from_leaf_hashes(hashes[:1000])
        assert tree.leaf_hashes(0, 1000) == hashes[:1000]
        tree.append(hashes[1000:])
        store = SqlTileStore(session, "org_a")
        assert sorted(store.read_tiles([(0, n) for n in range(10)] + [(1, 0), (7, 7)])) == [
            (0, 0),
            (0, 1),
            (0, 2),
            (0, 3),
            (0, 4),
            (0, 5),
            (1, 0),
        ]
        assert store.read_tiles([(0, 0)]) == {(0, 0): Tile(b"".join(hashes[:256]), interior_of(b"".join(hashes[:256])))}
        assert len(store.read_tiles([(0, n) for n in range(1000)])) == 6  # more keys than one query takes
        session.rollback()  # the caller owns the transaction: nothing was committed inside
    with db.session() as session:
        tree = TiledTree(SqlTileStore(session, "org_a"), 1000)
        assert tree.root() == root_from_leaf_hashes(hashes[:1000])
        assert SqlTileStore(session, "org_a").read_tiles([(0, 4)]) == {}
        other = SqlTileStore(session, "org_b").read_tiles([(0, 0), (0, 1)])
        assert Counter(len(v.hashes) for v in other.values()) == {96: 1}


def test_a_tile_read_looks_up_the_whole_key(db: Database) -> None:
    """A proof's read finds each tile by its whole key (organisation, level, index) on SQLite: with the levels
    OR-ed in one WHERE, SQLite searched by organisation alone and tested every tile of the log (a cold proof's
    read grew with the log)."""
    with db.session() as session:
        tree = TiledTree(SqlTileStore(session, "org_a"), 0)
        tree.append(_hashes(70_000))
        raw = session.connection().connection.dbapi_connection
        assert raw is not None
        statements: list[str] = []
        raw.set_trace_callback(statements.append)
        TiledTree(SqlTileStore(session, "org_a"), 70_000).inclusion_proof(12_345, 70_000)  # tiles of levels 0, 1
        raw.set_trace_callback(None)
        (read,) = [s for s in statements if "FROM log_tile" in s]
        plan = [row[-1] for row in session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {read}")]
    searches = [step for step in plan if "log_tile" in step]
    assert len(searches) == 2, plan
    assert all(step.endswith("(org_id=? AND level=? AND idx=?)") for step in searches), plan
