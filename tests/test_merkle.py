"""RFC 6962/9162 hashing and proof verification against transparency-dev/merkle's published vectors.

Vectors: transparency-dev/merkle testonly/constants.go (leaves, node and root hashes) and proof/verify_test.go
(inclusion and consistency proofs, and its corruption probes, ported one for one).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any

import pytest

from compliance.ledger.log_error import INCONSISTENT, INVALID_PROOF, MALFORMED, ROLLED_BACK, LogError
from compliance.ledger.merkle import (
    EMPTY_ROOT,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

pytestmark = pytest.mark.once  # independent of the database under test: the SQLite pass only

h = bytes.fromhex

LEAVES = [h(x) for x in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657"]] + [
    h("606162636465666768696a6b6c6d6e6f")
]
# RootHashes() indexed by size, 0..8.
ROOTS = [EMPTY_ROOT] + [
    h(x)
    for x in [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
]
LEAF_HASHES = [
    h(x)
    for x in [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ]
]
# verify_test.go inclusionProofs, with its 1-based leaf numbers made 0-based indices.
INCLUSION = [
    (0, 8, ["96a296d2", "5f083f0a", "6b47aaf2"]),
    (5, 8, ["bc1a0643", "ca854ea1", "d37ee418"]),
    (2, 3, ["fac54203"]),
    (1, 5, ["6e340b9c", "5f083f0a", "bc1a0643"]),
]
CONSISTENCY = [
    (1, 8, ["96a296d2", "5f083f0a", "6b47aaf2"]),
    (6, 8, ["0ebc5d34", "ca854ea1", "d37ee418"]),
    (2, 5, ["5f083f0a", "bc1a0643"]),
    (6, 7, ["0ebc5d34", "b08693ec", "d37ee418"]),
]
FULL = {
    x[:8]: h(x)
    for x in [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    ]
}
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")


def _proof(short: list[str]) -> list[bytes]:
    return [FULL[s] for s in short]


def _raises(code: str, fn: Callable[[], None]) -> None:
    with pytest.raises(LogError) as info:
        fn()
    assert info.value.code == code, info.value.message


def test_empty_root_and_leaf_hashes() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert [leaf_hash(x) for x in LEAVES] == LEAF_HASHES
    assert node_hash(LEAF_HASHES[0], LEAF_HASHES[1]) == ROOTS[2]


def test_roots_of_every_size() -> None:
    for size in range(9):
        assert root_from_leaf_hashes(LEAF_HASHES[:size]) == ROOTS[size]
    assert root_from_leaf_hashes(iter(LEAF_HASHES)) == ROOTS[8]


def test_root_from_leaf_hashes_matches_recursive_definition() -> None:
    def mth(hs: list[bytes]) -> bytes:
        if len(hs) == 1:
            return hs[0]
        k = 1 << ((len(hs) - 1).bit_length() - 1)
        return node_hash(mth(hs[:k]), mth(hs[k:]))

    hs = [hashlib.sha256(bytes([i])).digest() for i in range(70)]
    for n in range(1, 71):
        assert root_from_leaf_hashes(hs[:n]) == mth(hs[:n])


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_published_inclusion_proofs_and_their_corruptions(index: int, size: int, proof: list[str]) -> None:
    path, root, leaf = _proof(proof), ROOTS[size], LEAF_HASHES[index]
    verify_inclusion(leaf, index, size, path, root)
    probes: list[tuple[str, int, int, bytes, list[bytes], bytes]] = [
        (INVALID_PROOF, index + 1, size, leaf, path, root),
        (INVALID_PROOF, index ^ 2, size, leaf, path, root),
        (INVALID_PROOF, index, size * 2, leaf, path, root),
        (INVALID_PROOF, index, size // 2, leaf, path, root),
        (MALFORMED, index, size, b"WrongLeaf", path, root),
        (INVALID_PROOF, index, size, SOME_HASH, path, root),
        (INVALID_PROOF, index, size, leaf, path, EMPTY_ROOT),
        (INVALID_PROOF, index, size, leaf, path, SOME_HASH),
        (MALFORMED, index, size, leaf, [*path, b""], root),
        (INVALID_PROOF, index, size, leaf, [*path, root], root),
        (MALFORMED, index, size, leaf, [b"", *path], root),
        (INVALID_PROOF, index, size, leaf, [root, *path], root),
        (INVALID_PROOF, index, size, leaf, path[:-1], root),
    ]
    if index:
        probes.append((INVALID_PROOF, index - 1, size, leaf, path, root))
    if len(path) > 1:
        probes.append((INVALID_PROOF, index, size, leaf, [path[0], SOME_HASH, *path[1:]], root))
    for i in range(len(path)):
        flipped = [*path]
        flipped[i] = bytes([path[i][0] ^ 8]) + path[i][1:]
        probes.append((INVALID_PROOF, index, size, leaf, flipped, root))
    for code, i, n, lf, p, r in probes:
        _raises(code, lambda: verify_inclusion(lf, i, n, p, r))  # noqa: B023


def test_inclusion_edge_cases() -> None:
    leaf = leaf_hash(b"data")
    verify_inclusion(leaf, 0, 1, [], leaf)
    _raises(INVALID_PROOF, lambda: verify_inclusion(leaf, 0, 1, [], SOME_HASH))
    _raises(MALFORMED, lambda: verify_inclusion(b"", 0, 1, [], leaf))
    _raises(MALFORMED, lambda: verify_inclusion(leaf, 0, 1, [], b""))
    for index, size in [(0, 0), (1, 0), (1, 1), (2, 1), (5, 5)]:
        _raises(INVALID_PROOF, lambda: verify_inclusion(leaf, index, size, [], leaf))  # noqa: B023
    _raises(MALFORMED, lambda: verify_inclusion(leaf, -1, 1, [], leaf))
    _raises(MALFORMED, lambda: verify_inclusion(leaf, 0, 1 << 64, [], leaf))
    _raises(INVALID_PROOF, lambda: verify_inclusion(leaf, 0, 8, [SOME_HASH] * 65, leaf))
    _raises(MALFORMED, lambda: verify_inclusion(leaf, 0, 8, ["x" * 32], leaf))  # type: ignore[list-item]


def _rfc_verify_inclusion(leaf: Any, index: Any, size: Any, proof: Any, root: Any) -> None:
    """RFC 9162 §2.1.3.2 step by step, with every check before it: the verifier as it was before it split the
    path (inner and border hashes) and checked the proof's hashes in C; the reference the split one must match."""

    def hash_(value: Any, what: str) -> None:
        if not isinstance(value, bytes) or len(value) != 32:
            raise LogError(MALFORMED, what)

    for value, what in ((leaf, "leaf"), (root, "root")):
        hash_(value, what)
    for value in (index, size):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64:
            raise LogError(MALFORMED, "size")
    if len(proof) > 64:
        raise LogError(INVALID_PROOF, "too many")
    for p in proof:
        hash_(p, "proof hash")
    if index >= size:
        raise LogError(INVALID_PROOF, "index")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise LogError(INVALID_PROOF, "too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise LogError(INVALID_PROOF, "too short")
    if r != root:
        raise LogError(INVALID_PROOF, "root")


def _path(leaves: list[bytes], index: int) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n]), from its recursive definition."""
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if index < k:
        return [*_path(leaves[:k], index), root_from_leaf_hashes(leaves[k:])]
    return [*_path(leaves[k:], index - k), root_from_leaf_hashes(leaves[:k])]


def _outcome(check: Callable[..., None], *claim: Any) -> str | None:
    try:
        check(*claim)
    except LogError as exc:
        return exc.code
    return None


def test_inclusion_verifier_agrees_with_the_rfc_loop() -> None:
    """Every leaf of every tree up to 40 leaves (and three larger): the honest path, and the path cut, lengthened,
    shifted, with a hash flipped or of another type or length, and at neighbouring indexes and sizes, are accepted
    or refused (with the same code) exactly as the RFC's loop accepts or refuses them."""
    hs = [hashlib.sha256(bytes([i])).digest() for i in range(70)]
    accepted, sizes = 0, [*range(1, 41), 63, 64, 70]
    for size in sizes:
        root = root_from_leaf_hashes(hs[:size])
        for index in range(size):
            path = _path(hs[:size], index)
            variants: list[list[Any]] = [path, path[:-1], path[1:], [*path, SOME_HASH], [SOME_HASH, *path]]
            if path:
                i = index % len(path)
                flipped = bytes([path[i][0] ^ 1]) + path[i][1:]
                for odd in (flipped, bytearray(path[i]), memoryview(path[i]), path[i][:31], path[i] + b"\0", 7):
                    variants.append([*path[:i], odd, *path[i + 1 :]])
            for at, n in [(index, size), (index + 1, size), (index - 1, size), (index, size + 1), (index, size - 1)]:
                for p in variants:
                    ours = _outcome(verify_inclusion, hs[index], at, n, p, root)
                    assert ours == _outcome(_rfc_verify_inclusion, hs[index], at, n, p, root), (index, size, at, n)
                    accepted += ours is None
    assert accepted >= sum(sizes)  # every honest path (a tree of one leaf has three empty ones)


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY)
def test_published_consistency_proofs_and_their_corruptions(size1: int, size2: int, proof: list[str]) -> None:
    path, root1, root2 = _proof(proof), ROOTS[size1], ROOTS[size2]
    verify_consistency(size1, size2, path, root1, root2)
    probes: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (size1 - 1, size2, root1, root2, path),
        (size1 + 1, size2, root1, root2, path),
        (size1 ^ 2, size2, root1, root2, path),
        (size1, size2 * 2, root1, root2, path),
        (size1, size2, root2, root1, path),
        (size1, size2, SOME_HASH, root2, path),
        (size1, size2, root1, SOME_HASH, path),
        (size1, size2, root1, root2, []),
        (size1, size2, root1, root2, [*path, root1]),
        (size1, size2, root1, root2, [*path, root2]),
        (size1, size2, root1, root2, [root1, *path]),
        (size1, size2, root1, root2, [root2, *path]),
        (size1, size2, root1, root2, [path[0], *path]),
        (size1, size2, root1, root2, path[:-1]),
    ]
    for i in range(len(path)):
        flipped = [*path]
        flipped[i] = bytes([path[i][0] ^ 16]) + path[i][1:]
        probes.append((size1, size2, root1, root2, flipped))
    for s1, s2, r1, r2, p in probes:
        with pytest.raises(LogError) as info:
            verify_consistency(s1, s2, p, r1, r2)
        assert info.value.code in (INCONSISTENT, ROLLED_BACK)
    _raises(ROLLED_BACK, lambda: verify_consistency(size2, size1, path, root2, root1))
    _raises(MALFORMED, lambda: verify_consistency(size1, size2, [b"", *path], root1, root2))
    _raises(MALFORMED, lambda: verify_consistency(size1, size2, path, b"WrongRoot", root2))


def test_consistency_edge_cases() -> None:
    r1, r2 = ROOTS[1], ROOTS[2]
    verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    verify_consistency(0, 5, [], EMPTY_ROOT, ROOTS[5])
    verify_consistency(1, 1, [], r1, r1)
    verify_consistency(8, 8, [], ROOTS[8], ROOTS[8])
    # Size 0 with a non-empty root, and one size with two roots (a fork).
    _raises(INCONSISTENT, lambda: verify_consistency(0, 1, [], SOME_HASH, r1))
    _raises(INCONSISTENT, lambda: verify_consistency(1, 1, [], r1, r2))
    _raises(INCONSISTENT, lambda: verify_consistency(0, 0, [EMPTY_ROOT], EMPTY_ROOT, EMPTY_ROOT))
    _raises(INCONSISTENT, lambda: verify_consistency(0, 1, [EMPTY_ROOT], EMPTY_ROOT, r1))
    _raises(INCONSISTENT, lambda: verify_consistency(1, 1, [EMPTY_ROOT], r1, r1))
    _raises(INCONSISTENT, lambda: verify_consistency(1, 2, [], r1, r2))
    _raises(ROLLED_BACK, lambda: verify_consistency(1, 0, [], r1, EMPTY_ROOT))
    _raises(ROLLED_BACK, lambda: verify_consistency(2, 1, [], r2, r1))
    _raises(INCONSISTENT, lambda: verify_consistency(1, 8, [SOME_HASH] * 65, r1, ROOTS[8]))


def _consistent(s1: int, s2: int, proof: list[bytes], r1: bytes, r2: bytes) -> bool:
    """Whether the claim is true of this tree (RFC 9162: equal sizes need equal roots, size 0 the empty root)."""
    if not 0 <= s1 <= s2:
        return False
    if s1 == 0 or s1 == s2:
        return not proof and r1 == (EMPTY_ROOT if s1 == 0 else r2)
    return s2 < len(ROOTS) and (r1, r2) == (ROOTS[s1], ROOTS[s2])


def _included(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    """Whether ``leaf`` is at ``index`` of this tree of ``size``; a tree of one leaf is its own root."""
    if size == 1:
        return index == 0 and not proof and leaf == root
    return 0 <= index < size < len(ROOTS) and (leaf, root) == (LEAF_HASHES[index], ROOTS[size])


def test_random_mutations_only_raise_log_error() -> None:
    """Garbled sizes, roots and proofs: each call is refused with a log code, or accepted only when it is true."""
    rng = random.Random(7)
    path = _proof(CONSISTENCY[1][2])
    refused: dict[str, int] = {}
    accepted = 0
    for _ in range(500):
        pool = [*path, SOME_HASH, b"", b"\x00" * 31, b"\x00" * 33]
        p = [rng.choice(pool) for _ in range(rng.randint(0, 6))]
        s1, s2 = rng.randint(-2, 10), rng.randint(-2, 10)
        r1, r2 = rng.choice(ROOTS), rng.choice([*ROOTS, b"short"])
        claims: list[tuple[Any, Any, tuple[Any, ...]]] = [
            (verify_consistency, _consistent, (s1, s2, p, r1, r2)),
            (verify_inclusion, _included, (r1, s1, s2, p, r2)),
        ]
        for check, true, claim in claims:
            try:
                check(*claim)
            except LogError as exc:
                refused[exc.code] = refused.get(exc.code, 0) + 1
            else:  # accepted: then the claim must be true of this tree
                assert true(*claim), (check.__name__, claim)
                accepted += 1
    assert set(refused) == {MALFORMED, INVALID_PROOF, INCONSISTENT, ROLLED_BACK}, refused
    assert accepted + sum(refused.values()) == 1000 and accepted > 0
