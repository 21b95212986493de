"""The database: engine, sessions and migrations, for SQLite (embedded) and PostgreSQL (production).

SQLite write sessions start with ``BEGIN IMMEDIATE`` so that two requests never both read the log's size
and then race to append: the second waits for the first (busy timeout) instead of failing on upgrade.
PostgreSQL gets the same serialisation from ``SELECT ... FOR UPDATE`` on the organisation's log row.
Every wait is bounded by ``timeout`` (connecting, taking a pooled connection, SQLite's write lock), so an
unavailable database fails fast with an error the API answers as 503 instead of hanging the request.

SQLite has one writer at a time, and a connection that finds the write lock taken sleeps in SQLite's busy
handler, longer each time (1, 2, 5, 10, 15, 20, 25 ms ...), however soon the lock frees. So this process's own
write sessions take turns on a lock of ours first (bounded by the same ``timeout``), whose waiter wakes the
moment it is released: under one tenant's flood of uploads, another tenant's one small write (its rate-limit
count) had waited ~20 ms in that back-off behind writes that each held the lock for about a millisecond
(docs/isolation.md). Other processes (the CLI) still meet SQLite's own lock and its busy handler.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, insert, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import InvalidatePoolError, OperationalError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlmodel import Session, SQLModel

MIGRATIONS = Path(__file__).parent / "migrations"
IDLE_PING_SECONDS = 1.0  # PostgreSQL: a pooled connection idle longer than this is pinged before its next use
_IDLE_SINCE = "evault.idle_since"


class DatabaseFileChanged(RuntimeError):
    """The SQLite file at the configured path is gone or another file: pooled connections would keep writing
    to the unlinked one, and the next start would find an empty database."""


def _private_file(path: Path) -> None:
    """The database file is the service's alone (0600, whatever the umask); SQLite gives its -wal and -shm
    files the database file's mode. A new parent directory is 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)


def _sqlite_engine(url: str, *, immediate: bool, timeout: float) -> Engine:
    path = url.removeprefix("sqlite:///")
    if path and path != ":memory:":
        _private_file(Path(path))
    engine = create_engine(url, connect_args={"timeout": timeout, "check_same_thread": False, "isolation_level": None})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's pre-ping, but only for a connection that sat in the pool longer than ``IDLE_PING_SECONDS``.

    ``pool_pre_ping`` paid a round trip to the database on every checkout (eight per vault-in), and a connection
    returned moments ago is almost always sound. One whose server end died meanwhile (PostgreSQL restarted under
    load) fails its statement, which the API answers 503 ``Database.Unavailable`` and which invalidates the whole
    pool, as a failed ping does, so the next request connects afresh. A connection that was idle (a quiet night, a
    proxy's idle timeout) is pinged as before; the pool hands out the most recent connection first
    (``pool_use_lifo``), so the idle ones stay idle."""

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)  # none for a new connection (a replaced one's info starts empty)
        if since is None or time.monotonic() - since <= IDLE_PING_SECONDS:
            return
        dialect = engine.dialect
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if not dialect.is_disconnect(exc, dbapi_connection, None):
                raise
            raise InvalidatePoolError(f"pooled connection idle {time.monotonic() - since:.0f} s is gone") from exc


class Database:
    """Owns the engine; hands out sessions whose transaction commits on success and rolls back on error."""

    def __init__(self, url: str, timeout: float = 10) -> None:
        self.url = url
        self.timeout = timeout
        self._sqlite_file: tuple[Path, int, int] | None = None
        self._writers: threading.RLock | None = None  # SQLite: this process's write sessions, one at a time
        if url.startswith("sqlite"):
            self._writers = threading.RLock()
            self.engine = _sqlite_engine(url, immediate=True, timeout=timeout)
            self.read_engine = _sqlite_engine(url, immediate=False, timeout=timeout)
            path = url.removeprefix("sqlite:///").split("?", 1)[0]
            if path and path != ":memory:":
                opened = os.stat(path)
                self._sqlite_file = (Path(path), opened.st_dev, opened.st_ino)
        else:
            self.engine = create_engine(
                url,
                pool_size=10,
                max_overflow=10,
                pool_use_lifo=True,
                pool_timeout=timeout,
                connect_args={"connect_timeout": max(2, round(timeout))},  # libpq's minimum is 2 s
            )
            _ping_when_idle(self.engine)
            self.read_engine = self.engine

    def ping(self) -> None:
        """One trivial query on a pooled connection; raises what the driver raises (readiness probes), or
        :class:`DatabaseFileChanged` when the SQLite file answering it is no longer the one at its path."""
        with self.read_engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        if self._sqlite_file is not None:
            path, device, inode = self._sqlite_file
            try:
                now = path.stat()
            except OSError:
                raise DatabaseFileChanged("the SQLite database file is gone from its path") from None
            if (now.st_dev, now.st_ino) != (device, inode):
                raise DatabaseFileChanged("the SQLite database file at its path is not the one the service opened")

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision; run at every start."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            one_at_a_time(connection, "migrate")
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._write_turn(), Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def _write_turn(self) -> Iterator[None]:
        """SQLite: wait for this process's other write sessions on our lock (bounded by ``timeout``, then the
        error SQLite's own lock gives), not in SQLite's back-off; re-entrant, as a nested session was before."""
        if self._writers is None:
            yield
            return
        if not self._writers.acquire(timeout=self.timeout):
            raise OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked"))
        try:
            yield
        finally:
            self._writers.release()

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """For look-ups only: on SQLite a deferred transaction, so readers never queue behind writers (WAL)."""
        with Session(self.read_engine, expire_on_commit=False) as session:
            yield session  # closing returns the connection, and the pool ends its transaction

    def dispose(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()


def one_at_a_time(connection: Connection, what: str) -> None:
    """Hold ``what``'s lock until this transaction ends, so processes starting together (replicas) do it in
    turn. PostgreSQL: a transaction-scoped advisory lock, keyed by ``what`` and the schema, so that two vaults'
    schemas in one database do not wait on each other. SQLite: nothing to do, a write transaction already holds
    the whole file (``BEGIN IMMEDIATE``)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            "SELECT pg_advisory_xact_lock(hashtext(%(what)s || current_schema()))", {"what": f"evault.{what}."}
        )


@cache
def _statements(model: type[SQLModel]) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """(attribute, column) of each mapped column, and the plain and the ``ON CONFLICT DO NOTHING`` INSERT per
    dialect: built once per table, since building a statement costs more than SQLite takes to run it."""
    mapper = inspect(model)
    table = mapper.local_table
    key = next(iter(table.primary_key))  # returned when inserted: on PostgreSQL the row count here reads -1
    statements = {
        "plain": insert(table),
        "sqlite": sqlite.insert(table).on_conflict_do_nothing().returning(key),
        "postgresql": postgresql.insert(table).on_conflict_do_nothing().returning(key),
    }
    return [(attr.key, attr.columns[0].key) for attr in mapper.column_attrs], statements


def _values(columns: list[tuple[str, str]], row: SQLModel) -> dict[str, Any]:
    return {column: getattr(row, key) for key, column in columns}


def insert_rows(session: Session, rows: Sequence[SQLModel]) -> None:
    """New rows of one table as one plain INSERT in the session's transaction, without the unit of work.

    For a hot path that builds rows nothing in the session reads back: the rows stay transient objects (not in
    the session), so the caller must not change them and expect an UPDATE. Every mapped column is written as
    the object holds it (None as a flush writes it: NULL, or JSON ``null`` in a JSON column), so this is for
    tables without server-side defaults."""
    if rows:
        columns, statements = _statements(type(rows[0]))
        session.connection().execute(statements["plain"], [_values(columns, row) for row in rows])


def insert_if_absent(session: Session, row: SQLModel) -> bool:
    """As :func:`insert_rows` for one row, unless a row with its key is there (``ON CONFLICT DO NOTHING``):
    whether it was inserted. One statement where a look-up and an insert would be two."""
    columns, statements = _statements(type(row))
    connection = session.connection()
    dialect = "postgresql" if connection.dialect.name == "postgresql" else "sqlite"
    return connection.execute(statements[dialect], _values(columns, row)).first() is not None


@lru_cache(maxsize=64)
def _compiled(statement: Any, dialect: Dialect) -> tuple[SQLCompiler, dict[str, Any]]:
    """``statement`` compiled for ``dialect``, and the bind processors its parameters' types need there."""
    compiled: SQLCompiler = statement.compile(dialect=dialect)
    processors = {}
    for name, bind in compiled.binds.items():
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            processors[name] = processor
    return compiled, processors


def execute_compiled_once(connection: Connection, statement: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run a statement SQLAlchemy cannot cache, compiled once per dialect instead of on every call: the rows.

    A multi-row ``VALUES`` has no cache key, so SQLAlchemy compiles it each time it runs, which cost the rate
    limit's upsert most of its time on every request (docs/benchmarks.md). ``statement`` must be built once
    (the compiled form is kept per statement object) and return plain values: the rows are the driver's, with
    no result processing (str, int, float and None come back as they are on SQLite and psycopg)."""
    compiled, processors = _compiled(statement, connection.dialect)
    values = dict(compiled.construct_params(params) or {})
    for name, processor in processors.items():
        values[name] = processor(values[name])
    positions = compiled.positiontup
    driver_params: Any = tuple(values[name] for name in positions) if positions is not None else values
    return [tuple(row) for row in connection.exec_driver_sql(compiled.string, driver_params)]
