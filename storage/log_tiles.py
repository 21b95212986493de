"""The ``log_tile`` table as a ``TileStore``: one organisation's tiles, inside the caller's transaction.

Reads fetch many tiles per query (an inclusion proof reads all the tiles it lacks in one); writes are one
multi-row upsert (partial tiles are rewritten as they grow). A tile's ``interior`` (the parents complete inside
it, see ``compliance.ledger.tiles``) is NULL where a row was written before interiors were kept; it reads as
empty, which the tree recomputes. Nothing here commits: the append and the log size it implies must land in the
same transaction. A store made with ``shared=True`` (the trees that serve proofs) also hands its tree the
process's cache of committed tiles (``storage.shared_tiles``), for as long as its session has written no tile.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from typing import Any, NamedTuple

from sqlalchemy import Engine, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from storage.models import LogTile
from storage.shared_tiles import OrgTiles, shared_tiles

_TABLE: Table = LogTile.__table__  # type: ignore[attr-defined]
_READ_BATCH = 400  # keys per query, well under SQLite's limit of bound parameters
_MARK = {"sqlite": "?", "postgresql": "%s"}  # the DB-API parameter style of each driver the vault runs on
_WROTE_TILES = "evault.log_tiles.wrote"  # in Session.info: this session wrote tiles (maybe not committed)


@functools.lru_cache(maxsize=256)
def _read_sql(mark: str, counts: tuple[int, ...]) -> str:
    """The tiles of one organisation at levels holding ``counts`` indexes each, one ``SELECT`` per level joined
    by ``UNION ALL``, so that each is a look-up of the whole primary key (organisation, level, index). One
    ``WHERE`` with the levels ``OR``-ed made SQLite search the key by organisation alone and test every tile
    of the log: a cold proof's read grew with the log (three levels at 10^6 entries: 0.6 ms, now 17 µs). Only
    placeholders are spliced into the text; every value is a bound parameter (organisation, level, indexes, per
    level). Cached by shape: a proof asks one to four levels, a few indexes each."""
    return " UNION ALL ".join(
        f"SELECT level, idx, hashes, interior FROM log_tile WHERE org_id = {mark} AND level = {mark}"  # noqa: S608
        f" AND idx IN ({', '.join([mark] * n)})"
        for n in counts
    )


class Tile(NamedTuple):
    """A stored tile: its bottom row and its interior (empty where a row was stored without one)."""

    hashes: bytes
    interior: bytes


class SqlTileStore:
    def __init__(self, session: Session, org_id: str, *, shared: bool = False) -> None:
        self._session = session
        self._org_id = org_id
        self._share = shared
        self._shared: OrgTiles | None = None

    def shared(self) -> OrgTiles | None:
        """The process's committed tiles of this log, if this store was made to share and its session has
        written no tile (a tile it wrote may still be rolled back); else None."""
        if not self._share or self._session.info.get(_WROTE_TILES):
            return None
        if self._shared is None:
            bind = self._session.bind  # the engine the vault's sessions are made with: get_bind() costs more
            if bind is None:
                bind = self._session.get_bind()
            self._shared = OrgTiles(shared_tiles(bind if isinstance(bind, Engine) else bind.engine), self._org_id)
        return self._shared

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
                sql = _read_sql(mark, tuple(map(len, by_level.values())))
                cursor.execute(sql, [v for level, idxs in by_level.items() for v in (self._org_id, level, *idxs)])
                for level, idx, hashes, interior in cursor.fetchall():
                    out[(level, idx)] = Tile(bytes(hashes), bytes(interior or b""))
        finally:
            cursor.close()
        return out

    def write_tiles(self, tiles: Mapping[tuple[int, int], Tile]) -> None:
        if not tiles:
            return
        self._session.info[_WROTE_TILES] = True  # before the write: a failed one may have written some rows
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
