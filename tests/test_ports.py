"""The tests' port ranges stay inside one pass's block and never overlap, so two passes never probe one port."""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path

import pytest

from tests.ports import BLOCK, RANGES

pytestmark = pytest.mark.once


def test_ranges_fit_the_block_without_overlap() -> None:
    spans = sorted(RANGES.values())
    for (offset, width), (next_offset, _) in pairwise(spans):
        assert offset + width <= next_offset, (offset, width, next_offset)
    last_offset, last_width = spans[-1]
    assert last_offset + last_width <= BLOCK


def _default(script: str, variable: str) -> int:
    match = re.search(rf"{variable}:-(\d+)", script)
    assert match is not None, variable
    return int(match.group(1))


def test_the_lanes_blocks_are_apart_and_below_the_ephemeral_range() -> None:
    """The three lanes of the whole suite (SQLite, PostgreSQL, the tests marked once and then those marked
    budgeted) run at once: their blocks of named ranges, stores (a hundred ports) and served stores (a hundred)
    never overlap."""
    script = (Path(__file__).resolve().parents[1] / "scripts" / "test.sh").read_text()
    pg_port = _default(script, "EVAULT_TEST_PG_PORT")
    spans = [(pg_port, pg_port + 1)]
    # (the SQLite lane's default, read by the tests themselves; how wide each lane's range is)
    for kind, sqlite_base, width in (("AUX", 30000, BLOCK), ("S3", 28330, 100), ("SERVE", 23400, 100)):
        bases = [sqlite_base] + [_default(script, f"EVAULT_TEST_{lane}_{kind}_PORT_BASE") for lane in ("PG", "ONCE")]
        spans += [(base, base + width) for base in bases]
    spans.sort()
    for (_, end), (start, _) in pairwise(spans):
        assert end <= start, spans
    assert spans[-1][1] <= 32768
