"""Committed log tiles kept in memory across requests: one bounded cache per database engine, per process.

A request's inclusion proof builds a new ``TiledTree``, whose own cache starts empty, so without this every
proof read its tiles from the database. What makes sharing safe is the schema: a tile row is never deleted
and an update may only lengthen its bottom row, the old hashes a prefix of the new (the ``log_tile_grows`` and
``log_tile_no_delete`` triggers); the interior is derived from the row and grows the same way. So a committed
tile, full or partial, answers every later request that needs no more hashes than it holds; a full tile
(256 hashes) answers every request for good. Only tiles read in a session that has written no tile are kept
(what a session reads after writing one may be its own uncommitted write, undone by a rollback); the store
decides that (``storage.log_tiles.SqlTileStore.shared``). The folded right edge of a tree size (one hash,
derived from committed tiles) is kept beside them.

Bounded: ``TILES`` tiles (a full tile with its interior is 16,352 bytes, so about 64 MiB) and ``EDGES`` folded
edges per database engine, least recently used out first. Proofs ask for leaves uniformly, so no eviction policy
beats a hit rate of (tiles kept) / (bottom tiles), and the top tiles, on every proof's path, stay in any way:
4,096 holds every bottom tile of a log of 10^6 entries (3,907), where 1,024 (16 MiB) held a quarter and three
proofs in four read one from the database (bench/log.py). Thread-safe: the API's sync handlers share it. An
auditor does not read through it (the verifier re-reads the database); restoring a database under a running
process needs a restart, as its pooled connections do.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING

from sqlalchemy import Engine

if TYPE_CHECKING:  # storage.log_tiles hands these caches out
    from storage.log_tiles import Tile

TILES = 4096
EDGES = 4096
_HASH_SIZE = 32

TileKey = tuple[int, int]


class SharedTiles:
    """One database's committed tiles (by organisation, level, index) and right-edge folds (by organisation,
    start, size); a tile is answered only when it holds at least the hashes asked for."""

    def __init__(self, tiles: int = TILES, edges: int = EDGES) -> None:
        self._lock = threading.Lock()
        self._tiles: OrderedDict[tuple[str, int, int], Tile] = OrderedDict()
        self._edges: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self._max_tiles = tiles
        self._max_edges = edges

    def tiles(self, org_id: str, widths: Mapping[TileKey, int]) -> dict[TileKey, Tile]:
        """The kept tiles among ``widths`` holding at least ``widths[key]`` hashes each."""
        found: dict[TileKey, Tile] = {}
        with self._lock:
            kept = self._tiles
            for (level, idx), width in widths.items():
                key = (org_id, level, idx)
                tile = kept.get(key)
                if tile is not None and len(tile.hashes) >= width * _HASH_SIZE:
                    kept.move_to_end(key)
                    found[(level, idx)] = tile
        return found

    def keep(self, org_id: str, tiles: Mapping[TileKey, Tile]) -> None:
        """Keep committed ``tiles``; a kept tile is only ever replaced by a wider one."""
        with self._lock:
            kept = self._tiles
            for (level, idx), tile in tiles.items():
                key = (org_id, level, idx)
                old = kept.get(key)
                if old is None or len(old.hashes) < len(tile.hashes):
                    kept[key] = tile
                kept.move_to_end(key)
            while len(kept) > self._max_tiles:
                kept.popitem(last=False)

    def edge(self, org_id: str, start: int, size: int) -> bytes | None:
        with self._lock:
            key = (org_id, start, size)
            folded = self._edges.get(key)
            if folded is not None:
                self._edges.move_to_end(key)
            return folded

    def keep_edge(self, org_id: str, start: int, size: int, folded: bytes) -> None:
        with self._lock:
            self._edges[(org_id, start, size)] = folded
            self._edges.move_to_end((org_id, start, size))
            while len(self._edges) > self._max_edges:
                self._edges.popitem(last=False)


class OrgTiles:
    """``SharedTiles`` seen from one organisation's log: what a ``TiledTree`` asks."""

    __slots__ = ("_org_id", "_shared")

    def __init__(self, shared: SharedTiles, org_id: str) -> None:
        self._shared = shared
        self._org_id = org_id

    def tiles(self, widths: Mapping[TileKey, int]) -> dict[TileKey, Tile]:
        return self._shared.tiles(self._org_id, widths)

    def keep(self, tiles: Mapping[TileKey, Tile]) -> None:
        self._shared.keep(self._org_id, tiles)

    def edge(self, start: int, size: int) -> bytes | None:
        return self._shared.edge(self._org_id, start, size)

    def keep_edge(self, start: int, size: int, folded: bytes) -> None:
        self._shared.keep_edge(self._org_id, start, size, folded)


_BY_ENGINE: weakref.WeakKeyDictionary[Engine, SharedTiles] = weakref.WeakKeyDictionary()
_BY_ENGINE_LOCK = threading.Lock()


def shared_tiles(engine: Engine) -> SharedTiles:
    """The process's cache for the database behind ``engine`` (dropped with the engine). Found without the
    lock, as every proof's tree asks; made under it."""
    shared = _BY_ENGINE.get(engine)
    if shared is not None:
        return shared
    with _BY_ENGINE_LOCK:
        shared = _BY_ENGINE.get(engine)
        if shared is None:
            shared = _BY_ENGINE[engine] = SharedTiles()
        return shared
