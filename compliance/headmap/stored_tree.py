"""The head map as versioned nodes: update and prove by reading only the paths involved, never the whole map.

Trillian keeps a map's nodes by (node id, revision) and reads, for each node, the newest revision at or before the
one asked for. The same here: every commit stores the nodes it changed at its version (the log size it maps), so
the map at version V is, per node, the newest stored node with version <= V, and a node never stored by then is
empty. Keys are never removed, so a node only ever goes empty -> leaf -> interior, and nothing is ever stored
below a node that was a leaf or empty at V before V: reading deeper than the path ends finds nothing.

Nodes are named by their heap id, ``(1 << depth) | prefix`` (the root is 1), and hash exactly as ``HeadMap``
hashes them, so a proof from stored nodes is the proof the whole map in memory gives (tests/test_map_nodes.py).
The readers are passed in: SQL for the service (``sql_store``), a dict for a backfill.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from compliance.headmap.sparse_tree import HASHER, KEY_BITS, Head, MapProof, _empty, _leaf

_LOOKAHEAD = 32  # levels of a proof's path read in one go: about log2(n) + a few is the whole path


@dataclass(frozen=True)
class Node:
    """A stored node: its hash, and for a leaf the key it holds (an interior node has none)."""

    hash: bytes
    leaf_key: int | None = None


NodeReader = Callable[[Iterable[int]], Mapping[int, Node]]  # heap ids -> the nodes stored (absent: empty)
HeadReader = Callable[[Iterable[int]], Mapping[int, Head]]  # keys -> the heads the map holds for them


def heap_id(depth: int, prefix: int) -> int:
    return (1 << depth) | prefix


@dataclass
class _Step:
    """One node on the changed paths: where it is, the keys below it, and (once known) its children."""

    depth: int
    prefix: int
    keys: list[int]
    leaf: int | None = None
    children: list[_Step | bytes] = field(default_factory=list)
    hash: bytes = b""


def apply(
    tree_id: int, changes: Mapping[int, Head], read_nodes: NodeReader, read_heads: HeadReader
) -> tuple[bytes, dict[int, Node]]:
    """The new root after ``changes``, and every node it changed (to store at the new version).

    Walks down the changed paths one level at a time, reading in one batch the children of the stored interior
    nodes it passes; a leaf in the way of a new key moves down with it (its head is read, its hash changes).
    """
    root = _Step(0, 0, sorted(changes))
    steps, level, stored = [root], [root], read_nodes([1]).get(1)
    existing: dict[int, Node | None] = {1: stored}
    moved: set[int] = set()
    while level:
        wanted = [
            heap_id(s.depth + 1, (s.prefix << 1) | bit)
            for s in level
            if (n := existing.get(heap_id(s.depth, s.prefix))) is not None and n.leaf_key is None
            for bit in (0, 1)
        ]
        found = read_nodes(wanted) if wanted else {}
        below: list[_Step] = []
        for step in level:
            here = existing.get(heap_id(step.depth, step.prefix))
            if step.depth > 0 and len(step.keys) == 1 and (here is None or here.leaf_key == step.keys[0]):
                step.leaf = step.keys[0]  # a new leaf, or a new head in place
                continue
            if here is not None and here.leaf_key is not None:  # a leaf in the way: it moves down with the new keys
                if here.leaf_key not in changes:
                    moved.add(here.leaf_key)
                    step.keys = sorted({*step.keys, here.leaf_key})
                here = None
            split = bisect_left(step.keys, ((step.prefix << 1) | 1) << (KEY_BITS - step.depth - 1))
            for bit, keys in ((0, step.keys[:split]), (1, step.keys[split:])):
                child_id = heap_id(step.depth + 1, (step.prefix << 1) | bit)
                child = found.get(child_id) if here is not None else None
                if keys:
                    existing[child_id] = child
                    sub = _Step(step.depth + 1, (step.prefix << 1) | bit, keys)
                    step.children.append(sub)
                    below.append(sub)
                else:
                    step.children.append(
                        child.hash if child is not None else _empty(tree_id, (step.prefix << 1) | bit, step.depth + 1)
                    )
        steps += below
        level = below
    heads = dict(changes)
    if moved:
        heads.update(read_heads(moved))
    written: dict[int, Node] = {}
    for step in reversed(steps):  # deepest first: children are hashed before their parent
        if step.leaf is not None:
            step.hash = _leaf(tree_id, step.leaf, step.depth, heads[step.leaf])
        else:
            left, right = (c.hash if isinstance(c, _Step) else c for c in step.children)
            step.hash = HASHER.hash_children(left, right)
        written[heap_id(step.depth, step.prefix)] = Node(step.hash, step.leaf)
    return root.hash, written


def prove(key: int, read_nodes: NodeReader, read_heads: HeadReader) -> MapProof:
    """The proof for ``key`` from stored nodes: each level's node on the path and its sibling, read ahead."""
    siblings: list[bytes | None] = []
    found: Mapping[int, Node] = {}
    for depth in range(1, KEY_BITS + 1):
        if (depth - 1) % _LOOKAHEAD == 0:
            ids = []
            for d in range(depth, min(depth + _LOOKAHEAD, KEY_BITS + 1)):
                on_path = heap_id(d, key >> (KEY_BITS - d))
                ids += [on_path, on_path ^ 1]
            found = read_nodes(ids)
        on_path = heap_id(depth, key >> (KEY_BITS - depth))
        sibling = found.get(on_path ^ 1)
        siblings.append(sibling.hash if sibling is not None else None)
        node = found.get(on_path)
        if node is None:
            return MapProof(tuple(siblings), None, None)
        if node.leaf_key is not None:
            return MapProof(tuple(siblings), node.leaf_key, read_heads([node.leaf_key])[node.leaf_key])
    raise ValueError("a stored path runs past the key's last bit")
