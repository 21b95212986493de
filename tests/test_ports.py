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


def test_the_two_passes_blocks_are_apart_and_below_the_ephemeral_range() -> None:
    script = (Path(__file__).resolve().parents[1] / "scripts" / "test.sh").read_text()
    match = re.search(r"EVAULT_TEST_PG_AUX_PORT_BASE:-(\d+)", script)
    assert match is not None
    sqlite_base, pg_base = 30000, int(match.group(1))
    assert pg_base - sqlite_base >= BLOCK
    assert pg_base + BLOCK <= 32768
