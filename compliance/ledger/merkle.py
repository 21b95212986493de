"""RFC 6962 / RFC 9162 Merkle tree hashing and proof verification: pure functions, no I/O.

The consistency verifier follows RFC 9162 §2.1.4.2 step by step, so that an auditor can read it side by side
with the RFC. The inclusion verifier computes the same result as §2.1.3.2's loop, split the way
transparency-dev/merkle's ``proof.VerifyInclusion`` splits it: the proof's length is fixed by (index, size) and
checked first, then the ``inner`` hashes below the level where the leaf's path parts from the last leaf's (the
index's bit says the side) and the ``border`` hashes above it (all on the left). tests/test_merkle.py checks it
against the RFC's loop on every small tree. Every length and range is checked before any hashing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from itertools import repeat

from compliance.ledger.log_error import INCONSISTENT, INVALID_PROOF, MALFORMED, ROLLED_BACK, LogError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
MAX_PROOF_LEN = 64  # a tree of fewer than 2**64 leaves has no longer proof

_sha256 = hashlib.sha256
_HASH_LENGTH = frozenset({HASH_SIZE})
# An interior node's hash starts as a copy of this one, its 0x01 prefix already absorbed, and takes its two
# children, instead of hashing a concatenation (two new byte strings per node); a throwaway diagnostic put the
# fold about a tenth nearer raw SHA-256, which bench/log.py cannot tell apart, and proof verification a tenth
# faster on a machine whose SHA-256 calls cost more (docs/benchmarks.md). The hot loops inline it: a call per
# node would cost what it saves. Only ever copied, never updated, so threads may share it.
start_node = hashlib.sha256(b"\x01").copy


def leaf_hash(entry: bytes) -> bytes:
    """Hash of a log entry; the 0x00 prefix keeps a leaf from ever passing for an interior node."""
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    h = start_node()
    h.update(left)
    h.update(right)
    return h.digest()


def root_from_leaf_hashes(hashes: Iterable[bytes]) -> bytes:
    """Root of the tree over ``hashes`` in one pass: O(n) time, a stack of ≤ log2(n) perfect subtrees."""
    node = start_node
    stack: list[bytes] = []
    push, pop = stack.append, stack.pop
    count = 0
    for h in hashes:
        count += 1
        merges = count
        # The (i+1)-th leaf completes one perfect subtree per trailing zero bit of i+1.
        while not merges & 1:
            n = node()
            n.update(pop())
            n.update(h)
            h = n.digest()
            merges >>= 1
        push(h)
    if not stack:
        return EMPTY_ROOT
    root = pop()
    while stack:
        root = node_hash(pop(), root)
    return root


def _check_hash(value: object, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise LogError(MALFORMED, f"{what} is not a {HASH_SIZE}-byte hash")
    return value


def _check_size(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64:
        raise LogError(MALFORMED, f"{what} is not a tree size or index")
    return value


def _check_proof(proof: Sequence[bytes], code: str) -> list[bytes]:
    if len(proof) > MAX_PROOF_LEN:
        raise LogError(code, f"proof has {len(proof)} hashes, more than any tree needs")
    path = list(proof)
    # Every element a bytes object of HASH_SIZE bytes: C-level passes, as verifying is a hot path (bench/log.py).
    if not all(map(isinstance, path, repeat(bytes, len(path)))) or not {*map(len, path)} <= _HASH_LENGTH:
        raise LogError(MALFORMED, f"proof hash is not a {HASH_SIZE}-byte hash")
    return path


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Raise ``LogError`` unless ``proof`` puts ``leaf`` at ``index`` in the tree (``size``, ``root``)."""
    _check_hash(leaf, "leaf hash")
    _check_hash(root, "root hash")
    _check_size(index, "leaf index")
    _check_size(size, "tree size")
    path = _check_proof(proof, INVALID_PROOF)
    if index >= size:
        raise LogError(INVALID_PROOF, f"leaf index {index} is not below tree size {size}")
    inner = (index ^ (size - 1)).bit_length()  # levels below the one where the paths to index and size-1 meet
    length = inner + (index >> inner).bit_count()  # and one left sibling per 1 bit above it
    if len(path) != length:
        raise LogError(INVALID_PROOF, f"inclusion proof is too {'long' if len(path) > length else 'short'}")
    r, node, bits = leaf, start_node, index
    for p in path[:inner]:
        n = node()
        if bits & 1:
            n.update(p)
            n.update(r)
        else:
            n.update(r)
            n.update(p)
        r = n.digest()
        bits >>= 1
    for p in path[inner:]:
        n = node()
        n.update(p)
        n.update(r)
        r = n.digest()
    if r != root:
        raise LogError(INVALID_PROOF, "inclusion proof does not lead to the root")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Raise ``LogError`` unless the tree (size2, root2) extends the tree (size1, root1) by appends only."""
    _check_size(size1, "first tree size")
    _check_size(size2, "second tree size")
    _check_hash(root1, "first root hash")
    _check_hash(root2, "second root hash")
    path = _check_proof(proof, INCONSISTENT)
    if size2 < size1:
        raise LogError(ROLLED_BACK, f"tree size went back from {size1} to {size2}")
    if size1 == size2 or size1 == 0:
        # Nothing to prove; but the claims themselves must hold.
        if path:
            raise LogError(INCONSISTENT, "consistency proof must be empty for these sizes")
        if size1 == 0 and root1 != EMPTY_ROOT:
            raise LogError(INCONSISTENT, "the empty tree has another root")
        if size1 == size2 and root1 != root2:
            raise LogError(INCONSISTENT, "two roots for the same tree size: the log forked")
        return
    if not path:
        raise LogError(INCONSISTENT, "consistency proof is empty")
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: its root is a node of the second tree
        path = [root1, *path]
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    sha = _sha256
    for c in path[1:]:
        if sn == 0:
            raise LogError(INCONSISTENT, "consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = sha(b"\x01" + c + fr).digest()
            sr = sha(b"\x01" + c + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = sha(b"\x01" + sr + c).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise LogError(INCONSISTENT, "consistency proof is too short")
    if fr != root1:
        raise LogError(INCONSISTENT, "consistency proof does not lead to the first root")
    if sr != root2:
        raise LogError(INCONSISTENT, "consistency proof does not lead to the second root: the log forked")
