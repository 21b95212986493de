"""The ``log_tile`` table as a ``TileStore``: one organisation's tiles, inside the caller's transaction.

Reads fetch many tiles per query; writes are one multi-row upsert (partial tiles are rewritten as they grow).
Nothing here commits: the append and the log size it implies must land in the same transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import Table, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from storage.models import LogTile

_TABLE: Table = LogTile.__table__  # type: ignore[attr-defined]
_READ_BATCH = 400  # keys per query: two bound parameters each, well under SQLite's limit


class SqlTileStore:
    def __init__(self, session: Session, org_id: str) -> None:
        self._session = session
        self._org_id = org_id

    def read_tiles(self, keys: Collection[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        wanted = list(keys)
        out: dict[tuple[int, int], bytes] = {}
        connection = self._session.connection()
        for start in range(0, len(wanted), _READ_BATCH):
            query = select(_TABLE.c.level, _TABLE.c.idx, _TABLE.c.hashes).where(
                _TABLE.c.org_id == self._org_id,
                tuple_(_TABLE.c.level, _TABLE.c.idx).in_(wanted[start : start + _READ_BATCH]),
            )
            for level, idx, hashes in connection.execute(query):
                out[(level, idx)] = bytes(hashes)
        return out

    def write_tiles(self, tiles: Mapping[tuple[int, int], bytes]) -> None:
        if not tiles:
            return
        connection = self._session.connection()
        dialect = connection.dialect.name
        insert: Any
        if dialect == "sqlite":
            insert = sqlite.insert(_TABLE)
        elif dialect == "postgresql":
            insert = postgresql.insert(_TABLE)
        else:
            raise NotImplementedError(f"no tile upsert for {dialect}")
        statement = insert.on_conflict_do_update(
            index_elements=[_TABLE.c.org_id, _TABLE.c.level, _TABLE.c.idx],
            set_={"hashes": insert.excluded.hashes},
        )
        rows = [{"org_id": self._org_id, "level": k[0], "idx": k[1], "hashes": v} for k, v in tiles.items()]
        connection.execute(statement, rows)
