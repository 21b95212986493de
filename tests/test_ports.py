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
    """The three lanes of the whole suite (SQLite, PostgreSQL, the tests marked once) run at once: their
    blocks of named ranges, stores (a hundred ports) and served stores (a hundred) never overlap."""
    script = (Path(__file__).resolve().parents[1] / "scripts" / "test.sh").read_text()
    aux = [30000, _default(script, "EVAULT_TEST_PG_AUX_PORT_BASE"), _default(script, "EVAULT_TEST_ONCE_AUX_PORT_BASE")]
    stores = [28330, _default(script, "EVAULT_TEST_PG_S3_PORT_BASE"), _default(script, "EVAULT_TEST_ONCE_S3_PORT_BASE")]
    served = [23400, _default(script, "EVAULT_TEST_PG_SERVE_PORT_BASE")]
    served.append(_default(script, "EVAULT_TEST_ONCE_SERVE_PORT_BASE"))
    spans = sorted(
        [(base, base + BLOCK) for base in aux]
        + [(base, base + 100) for base in stores + served]
        + [(_default(script, "EVAULT_TEST_PG_PORT"), _default(script, "EVAULT_TEST_PG_PORT") + 1)]
    )
    for (_, end), (start, _) in pairwise(spans):
        assert end <= start, spans
    assert spans[-1][1] <= 32768
