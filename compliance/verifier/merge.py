"""Merging two key-ordered streams, the database's rows and the store's listing, in constant memory.

The database orders by the key's bytes (``COLLATE "C"`` on PostgreSQL, SQLite's default), as S3 lists. Should a
store list out of that order, nothing is lost: a row with no listed key is looked up alone before it is
called missing, and a listed key with no row is looked up in the database before it is called unrecorded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import groupby
from typing import Any, TypeVar

from sqlalchemy.orm import InstrumentedAttribute
from sqlmodel import Session

from storage.object_store import VersionEntry

Row = TypeVar("Row")


def binary_order(session: Session, column: InstrumentedAttribute[Any] | Any) -> Any:
    """ORDER BY ``column`` in byte order on both databases."""
    return column.collate("C") if session.get_bind().dialect.name == "postgresql" else column


def merge_by_key(
    rows: Iterable[Row], key_of: Callable[[Row], str], listing: Iterable[tuple[str, list[VersionEntry]]]
) -> Iterator[tuple[str, list[Row], list[VersionEntry]]]:
    """(key, rows with that key, listed versions of that key) for every key on either side, in key order."""
    grouped = ((k, list(g)) for k, g in groupby(rows, key=key_of))
    left, right = next(grouped, None), next(iter_ := iter(listing), None)
    while left is not None or right is not None:
        if right is None or (left is not None and left[0] < right[0]):
            assert left is not None
            yield left[0], left[1], []
            left = next(grouped, None)
        elif left is None or right[0] < left[0]:
            yield right[0], [], right[1]
            right = next(iter_, None)
        else:
            yield left[0], left[1], right[1]
            left, right = next(grouped, None), next(iter_, None)
