"""A statement SQLAlchemy cannot cache is compiled once per dialect (``storage.db.execute_compiled_once``).

The rate limit's multi-row upsert has no cache key, so SQLAlchemy compiled it on every request: most of the
edge's CPU (docs/benchmarks.md). These tests run on both databases: the driver takes SQLite's positional
parameters and psycopg's named ones, and each bind's type still processes its value.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import String, TypeDecorator, bindparam, select
from sqlalchemy.sql import compiler

from storage.db import Database, execute_compiled_once
from vault.ratelimit import Policy, admit


class _Shouted(TypeDecorator[str]):
    """A type whose bind processor is visible in the answer."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else value.upper()


@pytest.fixture
def compilations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL compilation from now on, as the class of what was compiled."""
    seen: list[str] = []
    original = compiler.SQLCompiler.__init__

    def counting(self: Any, dialect: Any, statement: Any, *args: Any, **kwargs: Any) -> None:
        seen.append(type(statement).__name__)
        original(self, dialect, statement, *args, **kwargs)

    monkeypatch.setattr(compiler.SQLCompiler, "__init__", counting)
    return seen


def test_values_are_processed_by_their_types_and_a_repeated_name_gets_its_value_each_time(db: Database) -> None:
    statement = select(
        bindparam("word", type_=_Shouted()), bindparam("number", type_=String()), bindparam("word", type_=_Shouted())
    )
    with db.read_session() as session:
        rows = execute_compiled_once(session.connection(), statement, {"word": "quiet", "number": "7"})
    assert rows == [("QUIET", "7", "QUIET")]


def test_a_statement_is_compiled_once_however_often_it_runs(db: Database, compilations: list[str]) -> None:
    statement = select(bindparam("word", type_=_Shouted()))
    with db.read_session() as session:
        answers = [execute_compiled_once(session.connection(), statement, {"word": w}) for w in ("a", "b", "c")]
    assert answers == [[("A",)], [("B",)], [("C",)]]
    assert compilations == ["Select"]


def test_a_requests_rate_count_is_not_compiled_again(db: Database, compilations: list[str]) -> None:
    """Each shape of count (a key's window and an organisation's pace here) is compiled at its first request."""
    key = Policy("default", 100, 60, "Request.RateLimited", "EVAULT_RATE_LIMIT")
    org = Policy("org", 300, 60, "Request.OrgRateLimited", "EVAULT_RATE_LIMIT_ORG", burst=30)
    admit(db, [("key_1", key), ("org_1", org)], now=1_800_000_000.0)
    compiled_first = len(compilations)
    usages = [admit(db, [("key_1", key), ("org_1", org)], now=1_800_000_000.0) for _ in range(5)]
    assert all(usage.admitted for counted in usages for usage in counted)
    assert [usage.remaining for usage in usages[-1]] == [94, 24]  # six requests counted against each
    assert len(compilations) == compiled_first
