"""PostgreSQL's pooled connections are pinged only after sitting idle (``storage.db._ping_when_idle``).

A connection whose server end died while it sat idle is replaced before anyone uses it; one in use moments
before is not pinged, and if its server end died it fails once (the API's 503 ``Database.Unavailable``), after
which the pool connects afresh. The server end is killed with ``pg_terminate_backend``, as a restart would.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.engine import Connection as DbConnection
from sqlalchemy.exc import DBAPIError

import storage.db
from storage.db import Database
from tests.helpers import PG_URL, pg_admin

pytestmark = pytest.mark.skipif(not PG_URL, reason="pooled pings are PostgreSQL's: this runs in the PostgreSQL pass")


@dataclass
class Pool:
    db: Database  # the vault's database
    admin: DbConnection  # a connection of its own outside the pool, to kill the vault's server ends
    pings: list[int]  # one item per ping of a pooled connection


@pytest.fixture
def pool(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pool]:
    db = Database(database_url)
    pings: list[int] = []
    ping = db.engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(1)
        return ping(dbapi_connection)

    monkeypatch.setattr(db.engine.dialect, "do_ping", counted)
    try:
        with pg_admin() as admin:
            yield Pool(db, admin, pings)
    finally:
        db.dispose()


def _backend(db: Database) -> int:
    with db.engine.connect() as connection:
        pid: int = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    return pid


def _kill(admin: DbConnection, pid: int) -> None:
    assert admin.exec_driver_sql("SELECT pg_terminate_backend(%s)", (pid,)).scalar_one()
    deadline = time.monotonic() + 10
    while admin.exec_driver_sql("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).scalar():
        assert time.monotonic() < deadline, f"backend {pid} still there"
        time.sleep(0.05)


def test_an_idle_connection_whose_server_end_died_is_replaced_unseen(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage.db, "IDLE_PING_SECONDS", 0.2)
    first = _backend(pool.db)
    _kill(pool.admin, first)
    time.sleep(0.3)  # idle past the threshold
    assert _backend(pool.db) != first  # no error: the ping found it gone and the pool connected afresh
    assert len(pool.pings) == 1


def test_a_connection_in_use_moments_ago_is_not_pinged_and_fails_once_if_its_server_end_died(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage.db, "IDLE_PING_SECONDS", 60.0)
    backends = {_backend(pool.db) for _ in range(50)}
    assert len(backends) == 1 and pool.pings == []  # the most recent connection each time, never pinged
    _kill(pool.admin, backends.pop())
    with pytest.raises(DBAPIError) as failed:
        _backend(pool.db)
    assert failed.value.connection_invalidated  # what the API answers 503 Database.Unavailable
    _backend(pool.db)  # the pool connected afresh
    assert pool.pings == []
    monkeypatch.setattr(storage.db, "IDLE_PING_SECONDS", 0.2)
    time.sleep(0.3)
    _backend(pool.db)
    assert len(pool.pings) == 1
