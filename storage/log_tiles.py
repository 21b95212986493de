"""The ``log_tile`` table as a ``TileStore``: one organisation's tiles, inside the caller's transaction.

Reads fetch many tiles per query (an inclusion proof reads all the tiles it lacks in one); writes are one
multi-row upsert (partial tiles are rewritten as they grow). A tile's ``interior`` (the parents complete inside
it, see ``compliance.ledger.tiles``) is NULL where a row was written before interiors were kept; it reads as
empty, which the tree recomputes. Nothing here commits: the append and the log size it implies must land in the
same transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, NamedTuple

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from storage.models import LogTile

_TABLE: Table = LogTile.__table__  # type: ignore[attr-defined]
_READ_BATCH = 400  # keys per query, well under SQLite's limit of bound parameters
_MARK = {"sqlite": "?", "postgresql": "%s"}  # the DB-API parameter style of each driver the vault runs on


def _read_sql(mark: str, levels: list[tuple[int, int]]) -> str:
    """The tiles of one organisation at ``(level, how many indexes)`` pairs: the primary key serves each term.
    Only placeholders are spliced into the text; every value is a bound parameter."""
    terms = " OR ".join(f"(level = {mark} AND idx IN ({', '.join([mark] * n)}))" for _, n in levels)
    return f"SELECT level, idx, hashes, interior FROM log_tile WHERE org_id = {mark} AND ({terms})"  # noqa: S608


class Tile(NamedTuple):
    """A stored tile: its bottom row and its interior (empty where a row was stored without one)."""

    hashes: bytes
    interior: bytes


class SqlTileStore:
    def __init__(self, session: Session, org_id: str) -> None:
        self._session = session
        self._org_id = org_id

    def read_tiles(self, keys: Collection[tuple[int, int]]) -> dict[tuple[int, int], Tile]:
        """The stored tiles among ``keys``. A cold inclusion proof is one call of this, so it goes straight to the
        DB-API cursor of the session's own connection (inside the caller's transaction): SQLAlchemy's statement
        handling cost several times the query itself here."""
        wanted = sorted(set(keys))
        out: dict[tuple[int, int], Tile] = {}
        connection = self._session.connection()
        mark = _MARK.get(connection.dialect.name)
        if mark is None:
            raise NotImplementedError(f"no tile read for {connection.dialect.name}")
        cursor = connection.connection.cursor()
        try:
            for start in range(0, len(wanted), _READ_BATCH):
                by_level: dict[int, list[int]] = {}
                for level, idx in wanted[start : start + _READ_BATCH]:
                    by_level.setdefault(level, []).append(idx)
                sql = _read_sql(mark, [(level, len(idxs)) for level, idxs in by_level.items()])
                cursor.execute(sql, [self._org_id, *(v for level, idxs in by_level.items() for v in (level, *idxs))])
                for level, idx, hashes, interior in cursor.fetchall():
                    out[(level, idx)] = Tile(bytes(hashes), bytes(interior or b""))
        finally:
            cursor.close()
        return out

    def write_tiles(self, tiles: Mapping[tuple[int, int], Tile]) -> None:
        if not tiles:
            return
        connection = self._session.connection()
        statement = _UPSERTS.get(connection.dialect.name)
        if statement is None:
            raise NotImplementedError(f"no tile upsert for {connection.dialect.name}")
        rows = [
            {"org_id": self._org_id, "level": k[0], "idx": k[1], "hashes": t.hashes, "interior": t.interior}
            for k, t in tiles.items()
        ]
        connection.execute(statement, rows)


def _upsert(insert: Any) -> Any:
    return insert.on_conflict_do_update(
        index_elements=[_TABLE.c.org_id, _TABLE.c.level, _TABLE.c.idx],
        set_={"hashes": insert.excluded.hashes, "interior": insert.excluded.interior},
    )


# Built once: every append writes tiles, and building this statement cost more than running it.
_UPSERTS = {"sqlite": _upsert(sqlite.insert(_TABLE)), "postgresql": _upsert(postgresql.insert(_TABLE))}
