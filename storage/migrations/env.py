"""Alembic environment: runs on the connection handed over by ``Database.migrate``.

On SQLite a batch migration recreates a table (copy, drop, rename). With foreign keys on, dropping a table that
other rows reference fails, and the pragma is ignored inside a transaction; so SQLite migrations run in a
transaction of their own with foreign keys off, and ``PRAGMA foreign_key_check`` must come back empty before
it commits (SQLite's documented procedure for altering a table). Foreign keys are back on before the caller's
transaction resumes.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (registers the tables on the metadata)


def _run_migrations() -> None:
    with context.begin_transaction():
        context.run_migrations()


def _run_sqlite_migrations(connection: Connection) -> None:
    connection.exec_driver_sql("COMMIT")  # the caller's BEGIN IMMEDIATE: nothing has happened in it yet
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            _run_migrations()
            dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if dangling:
                raise RuntimeError(f"a migration left foreign keys dangling: {dangling[:5]}")
        except BaseException:
            connection.exec_driver_sql("ROLLBACK")
            raise
        connection.exec_driver_sql("COMMIT")
    finally:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # handed back: Database.migrate ends it


connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True)
if connection.dialect.name == "sqlite":
    _run_sqlite_migrations(connection)
else:
    _run_migrations()
