"""A monitor's view of a log, written from the C2SP tlog-tiles specification alone (and the signed-note check of
tests/outside_verifier.py): fetch the checkpoint, every tile and entry bundle the checkpoint's size needs, check
each against the tree, and return the entries. Nothing here imports the vault."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.outside_verifier import Rejected, check_checkpoint

Fetch = Callable[[str], bytes]  # a path under the log's prefix -> its bytes (raises if absent)


def _index(n: int) -> str:
    digits = str(n).zfill(-(-len(str(n)) // 3) * 3)
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


def _path(kind: str, n: int, width: int) -> str:
    return f"tile/{kind}/{_index(n)}" + ("" if width == 256 else f".p/{width}")


def _mth(hashes: list[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash over already-hashed leaves."""
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(hashes[:k]) + _mth(hashes[k:])).digest()


def _hashes(blob: bytes, width: int) -> list[bytes]:
    if len(blob) != width * 32:
        raise Rejected(f"a tile of width {width} is {len(blob)} bytes")
    return [blob[i : i + 32] for i in range(0, len(blob), 32)]


def follow(fetch: Fetch, name: str, key: Ed25519PublicKey) -> tuple[int, list[bytes]]:
    """(size, entries) of the log as its checkpoint signs it; Rejected if any tile or entry disagrees."""
    _, size, root = check_checkpoint(fetch("checkpoint").decode(), name, key)
    leaves: list[bytes] = []
    entries: list[bytes] = []
    for n in range(-(-size // 256)):
        width = min(256, size - n * 256)
        leaves += _hashes(fetch(_path("0", n, width)), width)
        blob, at = fetch(_path("entries", n, width)), 0
        while at < len(blob):
            length = int.from_bytes(blob[at : at + 2], "big")
            entries.append(blob[at + 2 : at + 2 + length])
            at += 2 + length
    hashed = [hashlib.sha256(b"\x00" + e).digest() for e in entries]
    if len(entries) != size or hashed != leaves:
        raise Rejected("the entry bundles do not hash to the level-0 tiles")
    if size and _mth(leaves) != root:
        raise Rejected("the tiles do not hash to the checkpoint's root")
    level = 1
    while size >> (8 * level):  # every higher tile: hash i is MTH of a full tile below
        span, count = 256**level, size >> (8 * level)
        for n in range(-(-count // 256)):
            width = min(256, count - n * 256)
            got = _hashes(fetch(_path(str(level), n, width)), width)
            want = [_mth(leaves[(n * 256 + i) * span : (n * 256 + i + 1) * span]) for i in range(width)]
            if got != want:
                raise Rejected(f"a level-{level} tile disagrees with the leaves")
        level += 1
    return size, entries
