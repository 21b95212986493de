"""Identifiers: ``prefix_`` and 20 base-36 characters, each position uniform over the alphabet."""

from __future__ import annotations

import re
from collections import Counter

from storage.ids import new_id

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def test_an_id_is_its_prefix_and_twenty_base36_characters() -> None:
    ids = [new_id("doc") for _ in range(1000)]
    assert all(re.fullmatch(r"doc_[0-9a-z]{20}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_every_position_is_spread_evenly_over_the_alphabet() -> None:
    """A chi-square test per position over 36,000 ids (35 degrees of freedom: the 99.99th percentile is ~75, and
    chance passes 90 about once in a million): a number drawn from too few bits (its top positions always
    ``0``), or a skewed alphabet, fails it."""
    n = 36_000
    ids = [new_id("x")[2:] for _ in range(n)]
    expected = n / len(ALPHABET)
    for position in range(20):
        counts = Counter(i[position] for i in ids)
        chi2 = sum((counts.get(c, 0) - expected) ** 2 / expected for c in ALPHABET)
        assert chi2 < 90, (position, chi2, counts.most_common(3))
