"""SQLite's writers in one service process take turns on the service's own lock, not in SQLite's busy back-off.

SQLite has one writer at a time; a connection that finds the write lock taken sleeps in SQLite's busy handler,
longer each time, however soon the lock frees. Under one tenant's flood of uploads, another tenant's rate-limit
count (a one-row write) waited ~20 ms there for writes that held the lock under a millisecond each
(docs/isolation.md). These show the turn-taking itself, timing nothing:

- while one write session of the process is open, another thread's write session does not even take a
  connection (before, it took one at once, began its transaction and slept in the busy handler), and it goes on
  when the first ends;
- a write session that gets no turn within the database's timeout fails as SQLite's own lock made it fail, with
  the error the API answers as 503 ``Database.Unavailable``.

The lock is SQLite's alone (PostgreSQL's writers lock rows, not the database), so both passes of the suite use a
SQLite file of the test's own here.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from storage.db import Database
from vault.api.errors import database_unavailable


def _database(tmp_path: Path, timeout: float) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'turns.sqlite3'}", timeout=timeout)
    with db.session() as session:
        session.connection().exec_driver_sql("CREATE TABLE counts (n INTEGER)")
    opened = [db.engine.connect(), db.engine.connect()]  # two pooled connections, as a serving process has
    for connection in opened:
        connection.close()
    return db


def _write(db: Database, n: int) -> None:
    with db.session() as session:
        session.connection().exec_driver_sql(f"INSERT INTO counts VALUES ({n})")


def test_a_second_writer_waits_for_its_turn_before_it_goes_to_sqlite(tmp_path: Path) -> None:
    db = _database(tmp_path, timeout=30)
    taken: list[str] = []  # the threads that took a write connection, in order
    second_took = threading.Event()

    def note(*_: Any) -> None:
        taken.append(threading.current_thread().name)
        if taken[-1] == "second":
            second_took.set()

    event.listen(db.engine, "checkout", note)
    second = threading.Thread(target=_write, args=(db, 2), name="second")
    with db.session() as session:
        session.connection().exec_driver_sql("INSERT INTO counts VALUES (1)")  # holds SQLite's write lock
        second.start()
        second_took.wait(2)  # before the turns, the second writer took one at once (then slept in SQLite's back-off)
        assert "second" not in taken, "the second writer went to SQLite's lock instead of waiting for its turn"
        assert second.is_alive()
    second.join(30)
    assert not second.is_alive()
    assert taken == ["MainThread", "second"]  # the first write, then the second in its turn
    with db.read_session() as session:
        assert [row[0] for row in session.connection().exec_driver_sql("SELECT n FROM counts ORDER BY n")] == [1, 2]


def test_a_writer_without_a_turn_within_the_timeout_fails_as_sqlites_lock_did(tmp_path: Path) -> None:
    db = _database(tmp_path, timeout=1)
    failures: list[BaseException] = []

    def second() -> None:
        try:
            _write(db, 2)
        except OperationalError as exc:
            failures.append(exc)

    thread = threading.Thread(target=second)
    with db.session() as session:
        session.connection().exec_driver_sql("INSERT INTO counts VALUES (1)")
        thread.start()
        thread.join(30)
    assert len(failures) == 1 and "database is locked" in str(failures[0])
    assert database_unavailable(failures[0])  # the API's 503 Database.Unavailable, with Retry-After
    _write(db, 3)  # the turn was given back: the next writer goes on
