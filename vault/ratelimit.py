"""Rate limits: fixed windows counted in the database, so every worker and replica shares one count.

A counter is one row per (subject, policy, window start). The subject is what its policy counts: an API key for
``default`` (every request, ``EVAULT_RATE_LIMIT``) and ``copies`` (copy issuances, ``EVAULT_RATE_LIMIT_COPIES``),
an organisation for ``org`` (every request of all its keys together, ``EVAULT_RATE_LIMIT_ORG``) and
``checkpoints`` (``EVAULT_RATE_LIMIT_CHECKPOINTS``, :mod:`vault.checkpoint_requests`). Each policy counts one kind
of subject, and the policy is part of the row's key, so a key's count and an organisation's never meet.

A request is counted against all its policies by one statement: a multi-row upsert that inserts each row with
count 1, or on conflict adds one *only while that row's count is below its policy's quota*, returning the rows it
counted. A row missing from the answer is a spent quota: the transaction is rolled back, so a refused request
counts nothing anywhere (when the organisation's quota refuses it, its key's count is not spent either), and it
is answered 429 with the code of the policy that refused it. On PostgreSQL the rows are locked in the order
given: the key's first, the organisation's (shared by all its requests) last, so it is held only until the
commit, and no two requests ever wait for each other in a cycle.

Answers carry the draft-ietf-httpapi-ratelimit-headers (-08 and later) structured fields, one item per policy:
``RateLimit-Policy: "default";q=100;w=60, "org";q=300;w=60`` and ``RateLimit: "default";r=42;t=17, "org";r=250;t=17``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Integer, bindparam, case
from sqlalchemy.dialects import postgresql, sqlite

from compliance.errors import RateLimited
from storage.db import Database
from storage.models import RateCounter
from storage.settings import ApiSettings

KEY_RATE_LIMITED = "Request.RateLimited"
ORG_RATE_LIMITED = "Request.OrgRateLimited"


@dataclass(frozen=True)
class Policy:
    name: str
    quota: int
    window: int  # seconds
    code: str  # the 429's error code when this policy refuses
    setting: str  # where the quota is set

    def header(self) -> str:
        return f'"{self.name}";q={self.quota};w={self.window}'


@dataclass(frozen=True)
class Usage:
    policy: Policy
    remaining: int
    reset: int  # seconds until the window ends
    admitted: bool  # this policy had room (the request is admitted only when every one of its policies had)

    def header(self) -> str:
        return f'"{self.policy.name}";r={self.remaining};t={self.reset}'


def request_policies(api: ApiSettings, key_id: str, org_id: str, route_policy: str | None) -> list[tuple[str, Policy]]:
    """What a partner request counts against, the key's policies first (see the module's note on lock order)."""
    counts = [(key_id, Policy("default", *api.rate_limit, KEY_RATE_LIMITED, "EVAULT_RATE_LIMIT"))]
    if route_policy == "copies":
        counts.append((key_id, Policy("copies", *api.rate_limit_copies, KEY_RATE_LIMITED, "EVAULT_RATE_LIMIT_COPIES")))
    counts.append((org_id, Policy("org", *api.rate_limit_org, ORG_RATE_LIMITED, "EVAULT_RATE_LIMIT_ORG")))
    return counts


@cache
def _upsert(dialect_name: str, rows: int) -> Any:
    """Insert each row with count 1, or add one while under its own quota; (policy, new count) of each counted
    row. Built once per dialect and number of rows: building a statement costs more than running it."""
    dialect: Any = postgresql if dialect_name == "postgresql" else sqlite
    table = RateCounter.__table__  # type: ignore[attr-defined]
    rows_in = [
        {
            "subject": bindparam(f"subject_{n}"),
            "policy": bindparam(f"policy_{n}"),
            "window_start": bindparam(f"window_start_{n}"),
            "count": 1,
        }
        for n in range(rows)
    ]
    statement = dialect.insert(table).values(rows_in)
    quota = case(
        *(
            (statement.excluded.policy == bindparam(f"policy_{n}"), bindparam(f"quota_{n}", type_=Integer))
            for n in range(rows)
        )
    )
    return statement.on_conflict_do_update(
        index_elements=["subject", "policy", "window_start"],
        set_={"count": table.c.count + 1},
        where=table.c.count < quota,
    ).returning(table.c.policy, table.c.count)


def admit(db: Database, counts: Sequence[tuple[str, Policy]], now: float | None = None) -> list[Usage]:
    """Count one request against each (subject, policy), all or none; a policy appears at most once."""
    if len({policy.name for _, policy in counts}) != len(counts):
        raise ValueError("each policy may count a request once")
    now = time.time() if now is None else now
    params: dict[str, Any] = {}
    resets: list[int] = []
    for n, (subject, policy) in enumerate(counts):
        start = int(now) // policy.window * policy.window
        params |= {f"subject_{n}": subject, f"policy_{n}": policy.name, f"window_start_{n}": start}
        params[f"quota_{n}"] = policy.quota
        resets.append(max(1, start + policy.window - int(now)))
    statement = _upsert("postgresql" if db.url.startswith("postgresql") else "sqlite", len(counts))
    with db.session() as session:  # a write session: on SQLite it takes this process's write turn
        counted = {str(policy): int(count) for policy, count in session.connection().execute(statement, params)}
        admitted = len(counted) == len(counts)
        if not admitted:
            session.rollback()  # a quota is spent: the request counts against none of its policies
    usages = []
    for (_, policy), reset in zip(counts, resets, strict=True):
        count = counted.get(policy.name)
        if count is None:
            usages.append(Usage(policy, 0, reset, admitted=False))
        else:  # rolled back, this request's own count is not kept
            usages.append(Usage(policy, policy.quota - (count if admitted else count - 1), reset, admitted=True))
    return usages


def consume(db: Database, subject: str, policy: Policy, now: float | None = None) -> Usage:
    """Count one request against ``policy`` for ``subject``; never over the quota."""
    return admit(db, [(subject, policy)], now)[0]


def retry_after(usages: Sequence[Usage]) -> int | None:
    """Seconds until every spent policy has room again (None: none is spent)."""
    return max((u.reset for u in usages if not u.admitted), default=None)


def refuse_if_spent(usages: Sequence[Usage]) -> None:
    """429 with the code of the first spent policy (the key's before its organisation's)."""
    spent = [u for u in usages if not u.admitted]
    if spent:
        policy, wait = spent[0].policy, retry_after(usages)
        raise RateLimited(
            policy.code,
            f"rate limit {policy.name} ({policy.setting}: {policy.quota} per {policy.window} s) reached; "
            f"retry after {wait} s",
            policy=policy.name,
            setting=policy.setting,
            retry_after=wait,
        )
