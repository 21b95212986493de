"""Rate limits per API key: fixed windows counted in the database, so every worker shares one count.

One row per (key, policy, window start). A request is admitted by a single atomic statement: insert the row
with count 1, or on conflict add one *only while the count is below the quota*, returning the new count. No
row back means the quota is spent: the request is refused with 429 and counts nothing. The answer carries the
draft-ietf-httpapi-ratelimit-headers (-08 and later) structured fields: ``RateLimit-Policy: "default";q=100;w=60``
and ``RateLimit: "default";r=42;t=17``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql, sqlite

from compliance.errors import RateLimited
from storage.db import Database
from storage.models import RateCounter


@dataclass(frozen=True)
class Policy:
    name: str
    quota: int
    window: int  # seconds

    def header(self) -> str:
        return f'"{self.name}";q={self.quota};w={self.window}'


@dataclass(frozen=True)
class Usage:
    policy: Policy
    remaining: int
    reset: int  # seconds until the window ends
    admitted: bool

    def header(self) -> str:
        return f'"{self.policy.name}";r={self.remaining};t={self.reset}'


def _upsert(dialect: Any) -> Any:
    """Insert the window's row with count 1, or add one while under the quota; the new count, or no row."""
    table = RateCounter.__table__  # type: ignore[attr-defined]
    return (
        dialect.insert(table)
        .values(key_id=bindparam("key_id"), policy=bindparam("policy"), window_start=bindparam("window_start"), count=1)
        .on_conflict_do_update(
            index_elements=["key_id", "policy", "window_start"],
            set_={"count": table.c.count + 1},
            where=table.c.count < bindparam("quota"),
        )
        .returning(table.c.count)
    )


_UPSERTS = {"postgresql": _upsert(postgresql), "sqlite": _upsert(sqlite)}  # built once: every request counts


def consume(db: Database, key_id: str, policy: Policy, now: float | None = None) -> Usage:
    """Count one request against ``policy`` for ``key_id``; never over the quota."""
    now = time.time() if now is None else now
    start = int(now) // policy.window * policy.window
    reset = max(1, start + policy.window - int(now))
    statement = _UPSERTS["postgresql" if db.url.startswith("postgresql") else "sqlite"]
    params = {"key_id": key_id, "policy": policy.name, "window_start": start, "quota": policy.quota}
    with db.session() as session:  # a write session: on SQLite it takes this process's write turn
        count = session.connection().execute(statement, params).scalar()
    if count is None:
        return Usage(policy, 0, reset, admitted=False)
    return Usage(policy, policy.quota - int(count), reset, admitted=True)


def admit(db: Database, key_id: str, policies: list[Policy]) -> list[Usage]:
    """Count the request against each policy in turn, stopping at the first one that is spent."""
    usages: list[Usage] = []
    for policy in policies:
        usages.append(consume(db, key_id, policy))
        if not usages[-1].admitted:
            break
    return usages


def refuse_if_spent(usages: list[Usage]) -> None:
    for usage in usages:
        if not usage.admitted:
            policy = usage.policy
            raise RateLimited(
                "Request.RateLimited",
                f"rate limit {policy.name} ({policy.quota} per {policy.window} s) reached; retry after {usage.reset} s",
                policy=policy.name,
                retry_after=usage.reset,
            )
