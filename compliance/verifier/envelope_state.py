"""The log audit's per-envelope state in a temporary SQLite file, so the verifier's memory stays flat in envelopes.

A log audit needs, per envelope, its chain's last (seq, entry hash), the head the map committed last and the head
pending since the last ``map.root``: held in dicts that was about 360 MiB at 10^6 envelopes. Here each is a table
of a private SQLite file with a bounded write-back cache of the most recently used envelopes in front, and the
map is stored as nodes (``stored_tree``), so re-deriving a ``map.root`` reads and re-hashes only the changed
paths: O(changed heads x depth) per commit, in chunks of ``COMMIT_CHUNK`` heads. The map's root depends only on
the set of heads, so applying the pending heads chunk by chunk gives the root applying them at once gives.

Only the latest map is needed (an audit never proves an older version), so a node is overwritten, not versioned.
The file is unlinked as soon as it is open: it goes away when the audit closes it, or when the process dies.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping

from compliance.headmap.sparse_tree import Head
from compliance.headmap.stored_tree import Node, apply

DEFAULT_CACHE = 8192  # envelopes kept in memory per table
COMMIT_CHUNK = 1024  # pending heads applied to the map in one walk
_IN = 500  # terms in one ``IN (...)`` (SQLite's default limit is far above)
_PAGE_CACHE_KIB = 8192  # SQLite's own page cache, per connection

Value = tuple[int, bytes]  # (seq, entry SHA-256)


def _heap(node: int) -> bytes:
    return node.to_bytes(33, "big")  # heap ids have up to 257 bits


class CachedTable:
    """A key -> (seq, hash) table; the most recently used keys stay in memory, changed ones are written when evicted."""

    def __init__(self, db: sqlite3.Connection, name: str, capacity: int) -> None:
        self._db, self._name, self._capacity = db, name, max(1, capacity)
        self._cache: OrderedDict[bytes, Value] = OrderedDict()
        self._dirty: set[bytes] = set()
        # ``seq`` has no type: a tampered entry's seq past 64 bits is kept as its digits (SQLite ints are 64-bit)
        db.execute(f"CREATE TABLE {name} (key BLOB PRIMARY KEY, seq NOT NULL, hash BLOB NOT NULL) WITHOUT ROWID")

    def get(self, key: bytes) -> Value | None:
        value = self._cache.get(key)
        if value is not None:
            self._cache.move_to_end(key)
            return value
        row = self._db.execute(f"SELECT seq, hash FROM {self._name} WHERE key = ?", (key,)).fetchone()  # noqa: S608
        if row is None:
            return None
        self._keep(key, (int(row[0]), row[1]))
        return self._cache[key]

    def put(self, key: bytes, value: Value) -> None:
        self._keep(key, value)
        self._dirty.add(key)

    def _keep(self, key: bytes, value: Value) -> None:
        self._cache[key] = value
        self._cache.move_to_end(key)
        if len(self._cache) > self._capacity:  # evict the oldest quarter at once: one write for many keys
            out = [self._cache.popitem(last=False) for _ in range(max(1, self._capacity // 4))]
            self._write([(k, v) for k, v in out if k in self._dirty])
            self._dirty.difference_update(k for k, _ in out)

    def _write(self, items: list[tuple[bytes, Value]]) -> None:
        if items:
            self._db.executemany(
                f"INSERT OR REPLACE INTO {self._name} (key, seq, hash) VALUES (?, ?, ?)",  # noqa: S608
                [(k, seq if -(2**63) <= seq < 2**63 else str(seq), digest) for k, (seq, digest) in items],
            )

    def flush(self) -> None:
        self._write([(k, self._cache[k]) for k in self._dirty])
        self._dirty.clear()

    def sorted_chunks(self, size: int) -> Iterator[list[tuple[bytes, Value]]]:
        """Every row in key order, ``size`` at a time (keyset pages: the table may be written between them)."""
        self.flush()
        after = b""
        while True:
            rows = self._db.execute(
                f"SELECT key, seq, hash FROM {self._name} WHERE key > ? ORDER BY key LIMIT ?",  # noqa: S608
                (after, size),
            ).fetchall()
            if not rows:
                return
            yield [(k, (int(seq), digest)) for k, seq, digest in rows]
            after = rows[-1][0]

    def clear(self) -> None:
        self._cache.clear()
        self._dirty.clear()
        self._db.execute(f"DELETE FROM {self._name}")  # noqa: S608


class EnvelopeState:
    """Chains, committed heads, pending heads and the map's nodes of one organisation's log audit."""

    def __init__(
        self, tree_id: int, cache: int = DEFAULT_CACHE, directory: str | None = None, chunk: int = COMMIT_CHUNK
    ) -> None:
        self.tree_id, self._chunk = tree_id, chunk
        handle, path = tempfile.mkstemp(prefix="evault-verify-", suffix=".sqlite", dir=directory)
        os.close(handle)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        finally:
            os.unlink(path)  # the open connection keeps the file; nothing is left behind
        for pragma in ("journal_mode = OFF", "synchronous = OFF", f"cache_size = -{_PAGE_CACHE_KIB}"):
            self._db.execute(f"PRAGMA {pragma}")
        self.chains = CachedTable(self._db, "chain", cache)  # envelope key -> (last seq, entry hash [+ 1: handed off])
        self._heads = CachedTable(self._db, "head", cache)  # map key -> the head the map holds
        self._pending = CachedTable(self._db, "pending", cache)  # map key -> its head since the last map.root
        self._db.execute("CREATE TABLE node (id BLOB PRIMARY KEY, hash BLOB NOT NULL, leaf BLOB) WITHOUT ROWID")

    def close(self) -> None:
        self._db.close()

    def pend(self, key: int, head: Head) -> None:
        self._pending.put(key.to_bytes(32, "big"), (head.seq, head.entry_hash))

    def commit(self) -> bytes:
        """The map's root with every pending head applied; the pending heads become the map's."""
        root = None
        for chunk in self._pending.sorted_chunks(self._chunk):
            root = self._apply({int.from_bytes(k, "big"): Head(*v) for k, v in chunk})
        self._pending.clear()
        return root if root is not None else self._apply({})

    def load_committed(self, heads: Iterable[tuple[int, Head]]) -> None:
        """Put heads straight into the map (a resumed audit rebuilding the map committed before its position)."""
        chunk: dict[int, Head] = {}
        for key, head in heads:
            chunk[key] = head
            if len(chunk) >= self._chunk:
                self._apply(chunk)
                chunk = {}
        if chunk:
            self._apply(chunk)

    def _apply(self, changes: Mapping[int, Head]) -> bytes:
        root, written = apply(self.tree_id, changes, self._read_nodes, self._read_heads)
        self._db.executemany(
            "INSERT OR REPLACE INTO node (id, hash, leaf) VALUES (?, ?, ?)",
            [
                (_heap(n), node.hash, None if node.leaf_key is None else _heap(node.leaf_key))
                for n, node in written.items()
            ],
        )
        for key, head in changes.items():
            self._heads.put(key.to_bytes(32, "big"), (head.seq, head.entry_hash))
        return root

    def _read_nodes(self, ids: Iterable[int]) -> dict[int, Node]:
        wanted = [_heap(n) for n in ids]
        found: dict[int, Node] = {}
        for start in range(0, len(wanted), _IN):
            part = wanted[start : start + _IN]
            rows = self._db.execute(
                f"SELECT id, hash, leaf FROM node WHERE id IN ({','.join('?' * len(part))})",  # noqa: S608
                part,
            )
            for node, digest, leaf in rows:
                found[int.from_bytes(node, "big")] = Node(digest, None if leaf is None else int.from_bytes(leaf, "big"))
        return found

    def _read_heads(self, keys: Iterable[int]) -> dict[int, Head]:
        out: dict[int, Head] = {}
        for key in keys:
            value = self._heads.get(key.to_bytes(32, "big"))
            if value is None:
                raise ValueError("a leaf of the stored map has no head")  # cannot happen: every leaf was applied
            out[key] = Head(*value)
        return out
