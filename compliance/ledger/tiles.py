"""A tiled Merkle tree (transparency-dev/tessera's layout) over any ``TileStore``.

Tile (L, N) holds up to 256 consecutive hashes of tree level 8L: the bottom row only, since every node above
it inside the tile is recomputed from that row in ≤ 255 hashes. A partial tile at the right edge is rewritten
as it grows, and a full tile never changes, so a tile's prefix stays valid for every historic tree size:
proofs for any size up to the current one come from the same tiles.

A ``TiledTree`` caches tiles (with the interior rows it has computed) in an LRU. A cached tile is used only
when it is at least as wide as the request needs, so a partial tile read before an append can never stand in
for the grown one. After a transaction that wrote through ``append`` rolls back, discard the ``TiledTree``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from compliance.ledger.log_error import CORRUPT, INVALID_PROOF, MALFORMED, ROLLED_BACK, LogCorrupt, LogError
from compliance.ledger.merkle import EMPTY_ROOT, HASH_SIZE

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
TILE_BYTES = TILE_WIDTH * HASH_SIZE

TileKey = tuple[int, int]  # (tile level, tile index)
Node = tuple[int, int]  # (tree level, index within the level): a perfect subtree


class TileStore(Protocol):
    """Where tiles live; ``read_tiles`` leaves absent tiles out of its answer."""

    def read_tiles(self, keys: Collection[TileKey]) -> dict[TileKey, bytes]: ...

    def write_tiles(self, tiles: Mapping[TileKey, bytes]) -> None: ...


class MemoryTileStore:
    """A dict of tiles: for tests and for an auditor that rebuilds a log in memory."""

    def __init__(self) -> None:
        self.tiles: dict[TileKey, bytes] = {}

    def read_tiles(self, keys: Collection[TileKey]) -> dict[TileKey, bytes]:
        return {k: self.tiles[k] for k in keys if k in self.tiles}

    def write_tiles(self, tiles: Mapping[TileKey, bytes]) -> None:
        self.tiles.update(tiles)


def _parent_row(row: bytes) -> bytes:
    """The complete parents of a row of concatenated hashes; an odd last hash has no complete parent."""
    sha = hashlib.sha256
    return b"".join([sha(b"\x01" + row[i : i + 64]).digest() for i in range(0, len(row) - 63, 64)])


def _row(rows: list[bytes], r: int) -> bytes:
    """Row ``r`` of a tile, computing (and keeping) the rows between the last known one and it."""
    while len(rows) <= r:
        rows.append(_parent_row(rows[-1]))
    return rows[r]


def _split(lo: int, hi: int) -> int:
    """RFC 6962's k: the largest power of two below the range's length."""
    return 1 << ((hi - lo - 1).bit_length() - 1)


def _range_nodes(lo: int, hi: int) -> list[Node]:
    """The perfect subtrees whose fold is MTH(D[lo:hi]), left to right (lo is aligned in any RFC range)."""
    nodes: list[Node] = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        nodes.append((level, lo >> level))
        lo += 1 << level
    return nodes


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """RFC 6962 PATH(index, D[0:size]) as leaf ranges, leaf side first."""
    out: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(lo, hi)
        if index < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
    out.reverse()
    return out


def _consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """RFC 6962 PROOF(size1, D[0:size2]) = SUBPROOF(size1, D[0:size2], true) as leaf ranges."""
    if size1 in (0, size2):
        return []
    out: list[tuple[int, int]] = []
    lo, hi, m, complete = 0, size2, size1, True
    while m != hi - lo:
        k = _split(lo, hi)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            m -= k
            lo += k
            complete = False
    if not complete:
        out.append((lo, hi))
    out.reverse()
    return out


class TiledTree:
    """An append-only RFC 6962 tree of ``size`` leaves whose hashes live in ``store``."""

    def __init__(self, store: TileStore, size: int, *, cache_tiles: int = 4096) -> None:
        if size < 0:
            raise ValueError("tree size must be ≥ 0")
        self._store = store
        self._size = size
        self._cache: OrderedDict[TileKey, list[bytes]] = OrderedDict()
        self._cache_tiles = cache_tiles

    @property
    def size(self) -> int:
        return self._size

    def _remember(self, key: TileKey, rows: list[bytes]) -> None:
        self._cache[key] = rows
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_tiles:
            self._cache.popitem(last=False)

    def _tiles(self, widths: Mapping[TileKey, int]) -> dict[TileKey, list[bytes]]:
        """Rows of each tile holding at least ``widths[key]`` hashes: cached if wide enough, else one read."""
        found: dict[TileKey, list[bytes]] = {}
        missing: list[TileKey] = []
        for key, width in widths.items():
            rows = self._cache.get(key)
            if rows is not None and len(rows[0]) >= width * HASH_SIZE:
                self._cache.move_to_end(key)
                found[key] = rows
            else:
                missing.append(key)
        if missing:
            got = self._store.read_tiles(missing)
            for key in missing:
                blob = got.get(key)
                need = widths[key] * HASH_SIZE
                if blob is None or len(blob) < need or len(blob) > TILE_BYTES or len(blob) % HASH_SIZE:
                    raise LogCorrupt(CORRUPT, f"tile {key} is missing or has the wrong length", tile=key)
                found[key] = [bytes(blob)]
                self._remember(key, found[key])
        return found

    def _node_hashes(self, nodes: Collection[Node]) -> dict[Node, bytes]:
        """Hashes of perfect subtrees, fetching every tile they need in one store read."""
        widths: dict[TileKey, int] = {}
        plan: list[tuple[Node, TileKey, int, int]] = []
        for node in nodes:
            level, index = node
            r = level % TILE_HEIGHT
            first = index << r
            key = (level // TILE_HEIGHT, first >> TILE_HEIGHT)
            width = first + (1 << r) - (key[1] << TILE_HEIGHT)
            if widths.get(key, 0) < width:
                widths[key] = width
            plan.append((node, key, r, (index - (key[1] << (TILE_HEIGHT - r))) * HASH_SIZE))
        tiles = self._tiles(widths)
        return {node: _row(tiles[key], r)[pos : pos + HASH_SIZE] for node, key, r, pos in plan}

    def _range_hashes(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        per_range = [_range_nodes(lo, hi) for lo, hi in ranges]
        hashes = self._node_hashes({n for nodes in per_range for n in nodes})
        sha = hashlib.sha256
        out: list[bytes] = []
        for nodes in per_range:
            h = hashes[nodes[-1]]
            for node in reversed(nodes[:-1]):
                h = sha(b"\x01" + hashes[node] + h).digest()
            out.append(h)
        return out

    def _check_size(self, size: int) -> int:
        if not 0 <= size <= self._size:
            raise LogError(INVALID_PROOF, f"tree size {size} is not in 0..{self._size}")
        return size

    def root(self, size: int | None = None) -> bytes:
        """Root hash of the tree's first ``size`` leaves (default: all of them)."""
        size = self._check_size(self._size if size is None else size)
        return self._range_hashes([(0, size)])[0] if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
        self._check_size(size)
        if not 0 <= index < size:
            raise LogError(INVALID_PROOF, f"leaf index {index} is not below tree size {size}")
        return self._range_hashes(_inclusion_ranges(index, size))

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 consistency proof that the tree of ``size2`` leaves extends the one of ``size1``."""
        self._check_size(size2)
        if not 0 <= size1 <= size2:
            raise LogError(ROLLED_BACK, f"tree size {size1} is above {size2}")
        return self._range_hashes(_consistency_ranges(size1, size2))

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        """Leaf hashes ``start`` to ``end`` (exclusive), read tile by tile without filling the cache."""
        self._check_size(end)
        if not 0 <= start <= end:
            raise LogError(INVALID_PROOF, f"leaf range {start}..{end} is reversed")
        out: list[bytes] = []
        first, last = start >> TILE_HEIGHT, (end - 1) >> TILE_HEIGHT
        batch = 256
        for chunk in range(first, last + 1, batch):
            keys = [(0, n) for n in range(chunk, min(chunk + batch, last + 1))]
            got = self._store.read_tiles(keys)
            for _, n in keys:
                lo = max(start, n << TILE_HEIGHT) - (n << TILE_HEIGHT)
                hi = min(end, (n + 1) << TILE_HEIGHT) - (n << TILE_HEIGHT)
                blob = got.get((0, n))
                if blob is None or len(blob) < hi * HASH_SIZE or len(blob) > TILE_BYTES:
                    raise LogCorrupt(CORRUPT, f"tile (0, {n}) is missing or too short", tile=(0, n))
                out.extend(blob[i : i + HASH_SIZE] for i in range(lo * HASH_SIZE, hi * HASH_SIZE, HASH_SIZE))
        return out

    def append(self, leaf_hashes: Sequence[bytes]) -> int:
        """Add leaves; read only the right-edge partial tiles, write only the tiles that changed."""
        for h in leaf_hashes:
            if not isinstance(h, bytes) or len(h) != HASH_SIZE:
                raise LogError(MALFORMED, "a leaf hash is not 32 bytes")
        if not leaf_hashes:
            return self._size
        edges: dict[TileKey, int] = {}
        count, tl = self._size, 0
        while count:
            if count % TILE_WIDTH:
                edges[(tl, count >> TILE_HEIGHT)] = count % TILE_WIDTH
            count >>= TILE_HEIGHT
            tl += 1
        tiles = self._tiles(edges)
        writes: dict[TileKey, bytes] = {}
        new = b"".join(leaf_hashes)
        count, tl = self._size, 0
        while new:
            first, offset = count >> TILE_HEIGHT, count % TILE_WIDTH
            row = tiles[(tl, first)][0][: offset * HASH_SIZE] + new if offset else new
            promoted: list[bytes] = []
            for start in range(0, len(row), TILE_BYTES):
                key = (tl, first + start // TILE_BYTES)
                rows = [row[start : start + TILE_BYTES]]
                writes[key] = rows[0]
                self._remember(key, rows)
                if len(rows[0]) == TILE_BYTES:
                    promoted.append(_row(rows, TILE_HEIGHT))
            new = b"".join(promoted)
            count >>= TILE_HEIGHT
            tl += 1
        self._store.write_tiles(writes)
        self._size += len(leaf_hashes)
        return self._size
