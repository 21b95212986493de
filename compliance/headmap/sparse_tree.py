"""The head map: an authenticated dictionary from each envelope to its latest chain position, per organisation.

An inclusion proof shows that an event happened; only a map of heads shows that nothing happened after it. The
map is a sparse Merkle prefix tree (CONIKS layout): an envelope's key is SHA-256(envelope id), and its leaf sits
at the shortest prefix of that key no other key shares, so the cost of hashing, updating and proving follows the
tree's real depth (about log2 of the number of envelopes), not 256 levels. The root is always an interior node.

Node hashing is Trillian's CONIKS hasher (google/trillian merkle/coniks/coniks.go), SHA-512/256, reproduced
against its published test vectors (tests/test_head_map.py):

    HashLeaf(treeID, id, depth, value) = H("L" || uint64 treeID || id masked to depth, padded || uint32 depth || value)
    HashEmpty(treeID, id, depth)       = H("E" || uint64 treeID || id masked to depth, padded || uint32 depth)
    HashChildren(l, r)                 = H(l || r)

Leaf, empty and interior inputs have fixed, different lengths here (117, 45 and 64 bytes) on top of the "L"/"E"
prefixes, and hashes depend on the node's position, so a subtree cannot be moved. The leaf value binds the full
key (key || uint64 seq || entry hash), so a leaf placed at a short prefix cannot be claimed by another key.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from compliance.ledger.chain import parse_entry
from compliance.ledger.log_error import INVALID_PROOF, MALFORMED, LogError

KEY_BITS = 256
TREE_ID_CONTEXT = b"evault head map v1\x00"


class ConiksHasher:
    """Trillian's ``coniks.Hasher``; ``name`` is any hashlib algorithm (the vectors use sha512_256 and sha1)."""

    def __init__(self, name: str = "sha512_256") -> None:
        self._proto = hashlib.new(name)
        self.size = self._proto.digest_size

    def _digest(self, data: bytes) -> bytes:
        h = self._proto.copy()
        h.update(data)
        return h.digest()

    def masked_id(self, path: bytes, depth: int) -> bytes:
        """The first ``depth`` bits of ``path``, the rest zero, padded to the hash size (writeMaskedNodeID)."""
        if not 0 <= depth <= self.size * 8:
            raise ValueError(f"depth {depth} out of range")
        whole, bits = divmod(depth, 8)
        out = path[:whole]
        if bits:
            out += bytes([path[whole] & (0xFF << (8 - bits)) & 0xFF])
        return out.ljust(self.size, b"\0")

    def hash_empty(self, tree_id: int, path: bytes, depth: int) -> bytes:
        return self._digest(
            b"E" + (tree_id % 2**64).to_bytes(8, "big") + self.masked_id(path, depth) + depth.to_bytes(4, "big")
        )

    def hash_leaf(self, tree_id: int, path: bytes, depth: int, value: bytes) -> bytes:
        return self._digest(
            b"L" + (tree_id % 2**64).to_bytes(8, "big") + self.masked_id(path, depth) + depth.to_bytes(4, "big") + value
        )

    def hash_children(self, left: bytes, right: bytes) -> bytes:
        return self._digest(left + right)


HASHER = ConiksHasher()


@dataclass(frozen=True)
class Head:
    """An envelope's latest event: its chain sequence number and the SHA-256 of its entry."""

    seq: int
    entry_hash: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.seq < 2**63 or len(self.entry_hash) != 32:
            raise LogError(MALFORMED, "a map head needs 0 <= seq < 2^63 and a 32-byte entry hash")


def tree_id_for(org_id: str) -> int:
    """Each organisation's map has its own tree id, so no node hash can be replayed in another's map."""
    return int.from_bytes(hashlib.sha256(TREE_ID_CONTEXT + org_id.encode()).digest()[:8], "big") >> 1


def map_key(envelope_id: str) -> int:
    return int.from_bytes(hashlib.sha256(envelope_id.encode()).digest(), "big")


def _path(key_prefix: int, depth: int) -> bytes:
    """The node at ``depth`` whose first ``depth`` key bits are ``key_prefix``, as a 32-byte id."""
    return (key_prefix << (KEY_BITS - depth)).to_bytes(32, "big")


def leaf_value(key: int, head: Head) -> bytes:
    return key.to_bytes(32, "big") + head.seq.to_bytes(8, "big") + head.entry_hash


def _empty(tree_id: int, prefix: int, depth: int) -> bytes:
    return HASHER.hash_empty(tree_id, _path(prefix, depth), depth)


def _leaf(tree_id: int, key: int, depth: int, head: Head) -> bytes:
    return HASHER.hash_leaf(tree_id, _path(key >> (KEY_BITS - depth), depth), depth, leaf_value(key, head))


@dataclass(frozen=True)
class MapProof:
    """Siblings from depth 1 down (``None`` = an empty subtree) and what ends the key's path: a leaf or nothing."""

    siblings: tuple[bytes | None, ...]
    leaf_key: int | None
    leaf_head: Head | None

    def as_json(self) -> dict[str, object]:
        leaf = None
        if self.leaf_key is not None and self.leaf_head is not None:
            leaf = {
                "key": self.leaf_key.to_bytes(32, "big").hex(),
                "seq": self.leaf_head.seq,
                "entry_hash": self.leaf_head.entry_hash.hex(),
            }
        return {"siblings": [s.hex() if s is not None else None for s in self.siblings], "leaf": leaf}

    @classmethod
    def from_json(cls, value: object) -> MapProof:
        try:
            assert isinstance(value, dict)
            siblings = tuple(None if s is None else _hex(s, "sibling") for s in value["siblings"])
            leaf = value["leaf"]
            if leaf is None:
                return cls(siblings, None, None)
            assert isinstance(leaf["seq"], int) and not isinstance(leaf["seq"], bool)
            key = int.from_bytes(_hex(leaf["key"], "key"), "big")
            return cls(siblings, key, Head(leaf["seq"], _hex(leaf["entry_hash"], "entry hash")))
        except (AssertionError, KeyError, TypeError) as exc:
            raise LogError(MALFORMED, "map proof is malformed", error=repr(exc)) from None


def _hex(value: object, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 64:
        raise LogError(MALFORMED, f"map proof {what} must be 64 hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise LogError(MALFORMED, f"map proof {what} is not hex") from None


def verify_map_proof(tree_id: int, key: int, proof: MapProof, root: bytes) -> Head | None:
    """The head the map at ``root`` holds for ``key``, or None if it proves the key absent; raise otherwise."""
    depth = len(proof.siblings)
    if not 1 <= depth <= KEY_BITS:
        raise LogError(MALFORMED, "map proof depth out of range", depth=depth)
    prefix = key >> (KEY_BITS - depth)
    if proof.leaf_key is None or proof.leaf_head is None:
        node = _empty(tree_id, prefix, depth)
    else:
        if proof.leaf_key >> (KEY_BITS - depth) != prefix:
            raise LogError(INVALID_PROOF, "map proof ends at a leaf off the key's path")
        node = _leaf(tree_id, proof.leaf_key, depth, proof.leaf_head)
    for level in range(depth, 0, -1):
        here = key >> (KEY_BITS - level)
        sibling = proof.siblings[level - 1]
        if sibling is None:
            sibling = _empty(tree_id, here ^ 1, level)
        node = HASHER.hash_children(sibling, node) if here & 1 else HASHER.hash_children(node, sibling)
    if node != root:
        raise LogError(INVALID_PROOF, "map proof does not lead to the committed map root")
    return proof.leaf_head if proof.leaf_key == key else None


class HeadMap:
    """The map in memory: heads by key, the keys sorted, and interior node hashes cached until a change."""

    def __init__(self, tree_id: int, heads: Mapping[int, Head] | None = None) -> None:
        self.tree_id = tree_id
        self.heads: dict[int, Head] = dict(heads or {})
        self._keys = sorted(self.heads)
        self._interior: dict[int, bytes] = {}  # by heap id (1 << depth) | prefix

    def __len__(self) -> int:
        return len(self.heads)

    def update(self, changes: Mapping[int, Head]) -> bytes:
        """Apply one batch of new heads and return the new root; only the changed paths are re-hashed."""
        for key in changes:
            for depth in range(KEY_BITS + 1):  # every ancestor: a stale deeper hash must not survive
                self._interior.pop((1 << depth) | (key >> (KEY_BITS - depth)), None)
        added = [k for k in changes if k not in self.heads]
        self.heads.update(changes)
        if added:
            self._keys.extend(added)
            self._keys.sort()
        return self.root()

    def root(self) -> bytes:
        return self._node(0, 0, 0, len(self._keys))

    def _split(self, depth: int, prefix: int, lo: int, hi: int) -> int:
        return bisect_left(self._keys, ((prefix << 1) | 1) << (KEY_BITS - depth - 1), lo, hi)

    def _node(self, depth: int, prefix: int, lo: int, hi: int) -> bytes:
        if depth > 0 and hi - lo == 0:
            return _empty(self.tree_id, prefix, depth)
        if depth > 0 and hi - lo == 1:
            key = self._keys[lo]
            return _leaf(self.tree_id, key, depth, self.heads[key])
        heap_id = (1 << depth) | prefix
        cached = self._interior.get(heap_id)
        if cached is not None:
            return cached
        mid = self._split(depth, prefix, lo, hi)
        value = HASHER.hash_children(
            self._node(depth + 1, prefix << 1, lo, mid), self._node(depth + 1, (prefix << 1) | 1, mid, hi)
        )
        self._interior[heap_id] = value
        return value

    def prove(self, key: int) -> MapProof:
        """Inclusion proof if ``key`` is in the map, otherwise a proof of its absence."""
        siblings: list[bytes | None] = []
        depth, prefix, lo, hi = 0, 0, 0, len(self._keys)
        while depth == 0 or hi - lo > 1:
            mid = self._split(depth, prefix, lo, hi)
            if (key >> (KEY_BITS - depth - 1)) & 1:
                siblings.append(self._node(depth + 1, prefix << 1, lo, mid) if mid > lo else None)
                lo, prefix = mid, (prefix << 1) | 1
            else:
                siblings.append(self._node(depth + 1, (prefix << 1) | 1, mid, hi) if hi > mid else None)
                hi, prefix = mid, prefix << 1
            depth += 1
        if hi - lo == 1:
            leaf = self._keys[lo]
            return MapProof(tuple(siblings), leaf, self.heads[leaf])
        return MapProof(tuple(siblings), None, None)


def heads_of(entries: Iterable[bytes]) -> dict[int, Head]:
    """The latest (highest seq) head per envelope among raw log entries; entries of no envelope are skipped."""
    heads: dict[int, Head] = {}
    for entry in entries:
        value = parse_entry(entry)
        envelope, seq = value.get("envelope"), value.get("seq")
        if isinstance(envelope, str) and isinstance(seq, int) and not isinstance(seq, bool):
            key = map_key(envelope)
            if key not in heads or heads[key].seq < seq:
                heads[key] = Head(seq, hashlib.sha256(entry).digest())
    return heads


def rederive_map(entries: Sequence[bytes], org_id: str) -> bytes:
    """The map root that the log prefix ``entries`` must produce: what an auditor compares a ``map.root`` with."""
    return HeadMap(tree_id_for(org_id), heads_of(entries)).root()
