"""C2SP tlog-tiles names: which tiles and entry bundles a tree size needs, where each lives, and the bundle
encoding, so that a monitor written from that specification alone can follow a log.

A tile at level L holds up to 256 consecutive hashes of tree level 8L (``compliance/ledger/tiles.py`` keeps
the same tiles in the database); a partial tile ``.p/<W>`` holds the first W of them. An entry bundle holds the
entries of one level-0 tile, each prefixed with its length as a big-endian uint16.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from compliance.ledger.tiles import TILE_HEIGHT, TILE_WIDTH

MAX_ENTRY_BYTES = 0xFFFF  # the bundle's uint16 length prefix
_INDEX_GROUP = re.compile(r"x[0-9]{3}")
_LAST_GROUP = re.compile(r"[0-9]{3}")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")
_LEVEL = re.compile(r"0|[1-9][0-9]?")  # ASCII digits, no leading zero

TileRef = tuple[int, int, int]  # (level, index, width); width 256 is a full tile


def encode_index(index: int) -> str:
    """``1234067`` -> ``x001/x234/067``: zero-padded groups of three digits, all but the last with an ``x``."""
    if index < 0:
        raise ValueError("a tile index is ≥ 0")
    digits = str(index)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([f"x{g}" for g in groups[:-1]] + [groups[-1]])


def _suffix(width: int) -> str:
    if not 1 <= width <= TILE_WIDTH:
        raise ValueError("a tile is 1 to 256 hashes wide")
    return "" if width == TILE_WIDTH else f".p/{width}"


def tile_path(level: int, index: int, width: int) -> str:
    return f"tile/{level}/{encode_index(index)}{_suffix(width)}"


def entries_path(index: int, width: int) -> str:
    return f"tile/entries/{encode_index(index)}{_suffix(width)}"


def parse_path(path: str) -> tuple[int | None, int, int]:
    """``(level, index, width)`` of a tile path, level None for an entry bundle; ValueError if not one."""
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise ValueError("not a tile path")
    level: int | None
    if parts[1] == "entries":
        level = None
    elif _LEVEL.fullmatch(parts[1]) and int(parts[1]) <= 63:
        level = int(parts[1])
    else:
        raise ValueError("not a tile level")
    rest, width = parts[2:], TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        if not _WIDTH.fullmatch(rest[-1]) or int(rest[-1]) >= TILE_WIDTH:
            raise ValueError("not a partial tile width")
        width = int(rest[-1])
        rest = [*rest[:-2], rest[-2].removesuffix(".p")]
    if not rest or not all(_INDEX_GROUP.fullmatch(g) for g in rest[:-1]) or not _LAST_GROUP.fullmatch(rest[-1]):
        raise ValueError("not a tile index")
    return level, int("".join(g.lstrip("x") for g in rest)), width


def tiles_between(old_size: int, new_size: int) -> Iterator[TileRef]:
    """The tiles a tree of ``new_size`` needs that one of ``old_size`` did not: the full tiles completed since,
    and the partial tiles of ``new_size`` (a partial tile is named by its width, so each size has its own)."""
    if not 0 <= old_size <= new_size:
        raise ValueError("sizes must grow")
    level = 0
    while new_size >> (TILE_HEIGHT * level):
        old_count, new_count = old_size >> (TILE_HEIGHT * level), new_size >> (TILE_HEIGHT * level)
        for index in range(old_count >> TILE_HEIGHT, new_count >> TILE_HEIGHT):
            yield level, index, TILE_WIDTH
        width = new_count % TILE_WIDTH
        if width and new_count != old_count:
            yield level, new_count >> TILE_HEIGHT, width
        level += 1


def bundle(entries: Sequence[bytes]) -> bytes:
    out = bytearray()
    for entry in entries:
        if len(entry) > MAX_ENTRY_BYTES:
            raise ValueError("an entry is longer than an entry bundle can hold")
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)


def unbundle(blob: bytes) -> list[bytes]:
    entries, at = [], 0
    while at < len(blob):
        if at + 2 > len(blob):
            raise ValueError("a truncated length prefix")
        length = int.from_bytes(blob[at : at + 2], "big")
        if at + 2 + length > len(blob):
            raise ValueError("a truncated entry")
        entries.append(blob[at + 2 : at + 2 + length])
        at += 2 + length
    return entries
