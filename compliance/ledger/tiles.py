"""A tiled Merkle tree (transparency-dev/tessera's layout) over any ``TileStore``.

Tile (L, N) holds up to 256 consecutive hashes of tree level 8L (its bottom row: the C2SP tile) and, beside
them, its interior: every parent complete inside the tile, in the order the parents complete (after leaf c of
the tile, the ``trailing zeros of c`` parents it completes, lowest first). So a tile only grows, its interior
too, and a tile's prefix stays valid for every historic tree size: proofs for any size up to the current one
come from the same tiles, each proof hash a slice of one stored tile rather than a subtree recomputed from
the bottom row. A stored interior is derived data, like the upper tiles: a tile without one (or with one of
the wrong length for its width) has it recomputed from its bottom row. A wrong one of the right length yields
proofs that fail against the signed checkpoints, and roots that the verifier's audit, which re-derives the tree
from the entries, finds differing from the signed ones; it also re-derives each level-0 tile's interior.

A ``TiledTree`` caches tiles in an LRU. A cached tile is used only when it is at least as wide as the request
needs, so a partial tile read before an append can never stand in for the grown one. After a transaction that
wrote through ``append`` rolls back, discard the ``TiledTree``. A request's tree is new and its cache empty, so
a store may also offer the process's cache of committed tiles and right-edge folds (``TileStore.shared``,
``storage.shared_tiles``): the tree takes tiles from it before reading the rest in one query, and keeps what it
read there only; a tree that has appended stops using it (what it wrote may be rolled back).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from operator import itemgetter
from typing import Protocol

from compliance.ledger.log_error import CORRUPT, INVALID_PROOF, MALFORMED, ROLLED_BACK, LogCorrupt, LogError
from compliance.ledger.merkle import EMPTY_ROOT, HASH_SIZE, node_hash, start_node
from storage.log_tiles import Tile
from storage.shared_tiles import OrgTiles

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
TILE_BYTES = TILE_WIDTH * HASH_SIZE

TileKey = tuple[int, int]  # (tile level, tile index)
Node = tuple[int, int]  # (tree level, index within the level): a perfect subtree


class TileStore(Protocol):
    """Where tiles live; ``read_tiles`` leaves absent tiles out of its answer. ``shared``: the process's cache
    of this log's committed tiles, when everything this store reads now is committed; else None."""

    def read_tiles(self, keys: Collection[TileKey]) -> dict[TileKey, Tile]: ...

    def write_tiles(self, tiles: Mapping[TileKey, Tile]) -> None: ...

    def shared(self) -> OrgTiles | None: ...


class MemoryTileStore:
    """A dict of tiles: for tests and for an auditor that rebuilds a log in memory."""

    def __init__(self) -> None:
        self.tiles: dict[TileKey, Tile] = {}

    def read_tiles(self, keys: Collection[TileKey]) -> dict[TileKey, Tile]:
        return {k: self.tiles[k] for k in keys if k in self.tiles}

    def write_tiles(self, tiles: Mapping[TileKey, Tile]) -> None:
        self.tiles.update(tiles)

    def shared(self) -> OrgTiles | None:
        return None


def interior_length(width: int) -> int:
    """Bytes of the interior of a tile ``width`` hashes wide: one hash per parent complete in it."""
    return (width - width.bit_count()) * HASH_SIZE


def _interior_offset(row: int, index: int) -> int:
    """Where node ``index`` of tile row ``row`` (≥ 1) sits in the interior: after every parent completed before
    the leaf that completes it, and after the ``row - 1`` lower parents that leaf completes first."""
    before = ((index + 1) << row) - 1
    return (before - before.bit_count() + row - 1) * HASH_SIZE


_LOW = [(1 << (TILE_HEIGHT - r)) - 1 for r in range(TILE_HEIGHT)]  # index bits within a tile, per tile row
# Where node ``within`` of tile row r sits, at [r << 8 | within]: (0, offset) in the bottom row, (1, offset) in
# the interior (a ``Tile``'s fields); computed once, as every proof slices ~log2(size) of them.
_AT = [
    (0, within * HASH_SIZE) if r == 0 else (1, _interior_offset(r, within))
    for r in range(TILE_HEIGHT)
    for within in range(TILE_WIDTH)
]


def _grow_interior(row: bytes, done: int, interior: bytes) -> bytes:
    """``interior`` (the parents complete among the first ``done`` hashes of ``row``) extended to all of ``row``."""
    node = start_node
    stack: list[bytes] = []  # the perfect subtrees of the first ``done`` hashes, largest first
    lo = 0
    for r in range(TILE_HEIGHT, -1, -1):
        if done >> r & 1:
            at = lo * HASH_SIZE if r == 0 else _interior_offset(r, lo >> r)
            stack.append((row if r == 0 else interior)[at : at + HASH_SIZE])
            lo += 1 << r
    out = [interior]
    push, pop, add = stack.append, stack.pop, out.append
    for count in range(done + 1, len(row) // HASH_SIZE + 1):
        h = row[(count - 1) * HASH_SIZE : count * HASH_SIZE]
        while not count & 1:
            n = node()
            n.update(pop())
            n.update(h)
            h = n.digest()
            add(h)
            count >>= 1
        push(h)
    return b"".join(out)


def interior_of(row: bytes) -> bytes:
    """The interior a tile with bottom row ``row`` must have."""
    return _grow_interior(row, 0, b"")


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


def _plan(nodes: Sequence[Node], widths: dict[TileKey, int]) -> list[tuple[TileKey, int, int]]:
    """Where each perfect subtree's hash sits: (tile, 0 for the bottom row or 1 for the interior, offset);
    ``widths`` is widened to the bottom-row hashes each tile must hold."""
    plan: list[tuple[TileKey, int, int]] = []
    for level, index in nodes:
        r = level & 7
        key = (level >> 3, index >> (TILE_HEIGHT - r))
        within = index & _LOW[r]
        width = (within + 1) << r
        if widths.get(key, 0) < width:
            widths[key] = width
        part, at = _AT[r << TILE_HEIGHT | within]
        plan.append((key, part, at))
    return plan


@functools.cache
def _siblings(within: int, rows: int) -> tuple[int, Callable[[bytes], tuple[bytes, ...]], int]:
    """The siblings of the path up from hash ``within`` of a tile's bottom row, at the tile rows in the bit mask
    ``rows``: where the row-0 one sits in the bottom row (-1: not wanted), a getter of the others from the
    interior (lowest row first), and how many bottom-row hashes they need. Cached: 256 positions x masks."""
    at0, width, slices = -1, 0, []
    for r in range(TILE_HEIGHT):
        if rows >> r & 1:
            sibling = (within >> r) ^ 1
            width = max(width, (sibling + 1) << r)
            if r == 0:
                at0 = sibling * HASH_SIZE
            else:
                at = _interior_offset(r, sibling)
                slices.append(slice(at, at + HASH_SIZE))
    if len(slices) > 1:
        return at0, itemgetter(*slices), width
    return at0, (lambda blob: tuple(blob[s] for s in slices)), width


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
        self._cache: OrderedDict[TileKey, Tile] = OrderedDict()
        self._cache_tiles = cache_tiles
        # The right edge's folded hash at each (start, size): a tree has one per level, shared by half its proofs.
        self._edges: dict[tuple[int, int], bytes] = {}
        self._sharing = True  # until this tree appends

    def _shared(self) -> OrgTiles | None:
        return self._store.shared() if self._sharing else None

    @property
    def size(self) -> int:
        return self._size

    def _remember(self, key: TileKey, tile: Tile) -> None:
        self._cache[key] = tile
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_tiles:
            self._cache.popitem(last=False)

    def _tiles(self, widths: Mapping[TileKey, int], shared: OrgTiles | None) -> dict[TileKey, Tile]:
        """Each tile holding at least ``widths[key]`` hashes, with its interior: cached if wide enough, else one
        read. A tree that shares (``shared``: the store's shared cache, while this tree may use it) keeps what it
        reads there alone: its own cache fills only once it has appended, so it is empty while sharing and not
        looked in. A stored interior of the wrong length for its row is not used: it is recomputed from the row."""
        if shared is not None:
            found = shared.tiles(widths)
            if len(found) == len(widths):
                return found
            missing = {key: width for key, width in widths.items() if key not in found}
        else:
            found, missing = {}, {}
            cache = self._cache
            for key, width in widths.items():
                tile = cache.get(key)
                if tile is not None and len(tile.hashes) >= width * HASH_SIZE:
                    cache.move_to_end(key)
                    found[key] = tile
                else:
                    missing[key] = width
            if not missing:
                return found
        got = self._store.read_tiles(missing)
        read: dict[TileKey, Tile] = {}
        for key, width in missing.items():
            stored = got.get(key)
            row = b"" if stored is None else bytes(stored.hashes)
            if stored is None or len(row) < width * HASH_SIZE or len(row) > TILE_BYTES or len(row) % HASH_SIZE:
                raise LogCorrupt(CORRUPT, f"tile {key} is missing or has the wrong length", tile=key)
            interior = bytes(stored.interior)
            if len(interior) != interior_length(len(row) // HASH_SIZE):
                interior = interior_of(row)
            read[key] = found[key] = Tile(row, interior)
        if shared is not None:
            shared.keep(read)
        else:
            for key, tile in read.items():
                self._remember(key, tile)
        return found

    def _node_hashes(self, nodes: Sequence[Node]) -> list[bytes]:
        """Hashes of perfect subtrees, in order, each a slice of one tile; every missing tile in one read."""
        widths: dict[TileKey, int] = {}
        plan = _plan(nodes, widths)
        tiles = self._tiles(widths, self._shared())
        return [tiles[key][part][at : at + HASH_SIZE] for key, part, at in plan]

    def _range_hashes(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        per_range = [_range_nodes(lo, hi) for lo, hi in ranges]
        hashes = iter(self._node_hashes([n for nodes in per_range for n in nodes]))
        return [_fold([next(hashes) for _ in nodes]) for nodes in per_range]

    def _check_size(self, size: int) -> int:
        if not 0 <= size <= self._size:
            raise LogError(INVALID_PROOF, f"tree size {size} is not in 0..{self._size}")
        return size

    def root(self, size: int | None = None) -> bytes:
        """Root hash of the tree's first ``size`` leaves (default: all of them)."""
        size = self._check_size(self._size if size is None else size)
        return self._range_hashes([(0, size)])[0] if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` leaves.

        Below the level ``d`` where the leaf's path parts from the last leaf's, every sibling is a perfect
        subtree; at ``d`` the proof holds the right edge's subtrees folded into one hash; above it, the perfect
        left siblings where the index has a 1 bit. The perfect siblings of one tile level all sit in the one
        tile holding the path, and are sliced from it together; all the tiles come from one read. The folded
        right edge is kept (here, and in the shared cache): it depends only on ``d`` and the size."""
        self._check_size(size)
        if not 0 <= index < size:
            raise LogError(INVALID_PROOF, f"leaf index {index} is not below tree size {size}")
        d = (index ^ (size - 1)).bit_length() - 1
        wanted = index if d < 0 else ((1 << d) - 1) | (index >> (d + 1) << (d + 1))  # levels of perfect siblings
        widths: dict[TileKey, int] = {}
        siblings = []
        shift = 0
        while wanted >> shift:
            rows = (wanted >> shift) & (TILE_WIDTH - 1)
            if rows:
                key = (shift >> 3, index >> (shift + TILE_HEIGHT))
                at0, others, width = _siblings((index >> shift) & (TILE_WIDTH - 1), rows)
                widths[key] = width
                siblings.append((key, at0, others))
            shift += TILE_HEIGHT
        start = ((index >> d) + 1) << d if d >= 0 else size  # the right edge: leaves start..size
        edge_hash = self._edges.get((start, size))
        shared = self._shared()
        if shared is not None and start < size and edge_hash is None:
            edge_hash = shared.edge(start, size)
        edge = _plan(_range_nodes(start, size), widths) if start < size and edge_hash is None else []
        tiles = self._tiles(widths, shared)
        proof: list[bytes] = []
        for key, at0, others in siblings:
            tile = tiles[key]
            if at0 >= 0:
                proof.append(tile.hashes[at0 : at0 + HASH_SIZE])
            proof.extend(others(tile.interior))
        if edge:
            edge_hash = _fold([tiles[key][part][at : at + HASH_SIZE] for key, part, at in edge])
            if len(self._edges) >= self._cache_tiles:
                self._edges.clear()
            self._edges[(start, size)] = edge_hash
            if shared is not None:
                shared.keep_edge(start, size, edge_hash)
        if edge_hash is not None:
            proof.insert(d, edge_hash)
        return proof

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
                tile = got.get((0, n))
                blob = b"" if tile is None else tile.hashes
                if tile is None or len(blob) < hi * HASH_SIZE or len(blob) > TILE_BYTES:
                    raise LogCorrupt(CORRUPT, f"tile (0, {n}) is missing or too short", tile=(0, n))
                out.extend(blob[i : i + HASH_SIZE] for i in range(lo * HASH_SIZE, hi * HASH_SIZE, HASH_SIZE))
        return out

    def append(self, leaf_hashes: Sequence[bytes]) -> int:
        """Add leaves; read only the right-edge partial tiles, write only the tiles that changed, each with its
        interior grown by the parents the new hashes complete (O(1) hashes per new hash, amortised)."""
        for h in leaf_hashes:
            if not isinstance(h, bytes) or len(h) != HASH_SIZE:
                raise LogError(MALFORMED, "a leaf hash is not 32 bytes")
        if not leaf_hashes:
            return self._size
        self._sharing = False
        edges: dict[TileKey, int] = {}
        count, tl = self._size, 0
        while count:
            if count % TILE_WIDTH:
                edges[(tl, count >> TILE_HEIGHT)] = count % TILE_WIDTH
            count >>= TILE_HEIGHT
            tl += 1
        tiles = self._tiles(edges, None)
        writes: dict[TileKey, Tile] = {}
        new = b"".join(leaf_hashes)
        count, tl = self._size, 0
        while new:
            first, offset = count >> TILE_HEIGHT, count % TILE_WIDTH
            old = tiles[(tl, first)] if offset else Tile(b"", b"")
            row = old.hashes[: offset * HASH_SIZE] + new
            interior = old.interior[: interior_length(offset)]
            promoted: list[bytes] = []
            for start in range(0, len(row), TILE_BYTES):
                key = (tl, first + start // TILE_BYTES)
                part = row[start : start + TILE_BYTES]
                tile = Tile(part, _grow_interior(part, offset, interior) if start == 0 else interior_of(part))
                writes[key] = tile
                self._remember(key, tile)
                if len(part) == TILE_BYTES:
                    promoted.append(tile.interior[-HASH_SIZE:])  # the tile's root: the last parent it completes
            new = b"".join(promoted)
            count >>= TILE_HEIGHT
            tl += 1
        self._store.write_tiles(writes)
        self._size += len(leaf_hashes)
        return self._size


def _fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of adjacent perfect subtrees given left to right, each at least as big as the next."""
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h
