"""Rate limits counted in the database, so every worker and replica shares one count.

A counter is one row per (subject, policy, window start). The subject is what its policy counts: an API key for
``default`` (every request, ``EVAULT_RATE_LIMIT``) and ``copies`` (copy issuances, ``EVAULT_RATE_LIMIT_COPIES``),
an organisation for ``org`` (every request of all its keys together, ``EVAULT_RATE_LIMIT_ORG``), ``org-uploads``
(its document uploads, paced at the same quota with the smaller ``EVAULT_RATE_LIMIT_ORG_UPLOAD_BURST``) and
``checkpoints`` (``EVAULT_RATE_LIMIT_CHECKPOINTS``, :mod:`vault.checkpoint_requests`). Each policy counts one kind
of subject, and the policy is part of the row's key, so a key's count and an organisation's never meet.

Two kinds of policy. A *windowed* one counts in fixed windows: its quota may be spent at once, at the start of a
window. A *paced* one (the organisation's two) spreads its quota evenly over the window, with at most ``burst``
requests at once: the generic cell rate algorithm (GCRA, ITU-T I.371). Its one row (window start 0) keeps the
theoretical arrival time ``tat``: each admitted request moves it one interval (window / quota) past
``max(tat, now)``, and a request is refused while that would put it more than ``burst`` intervals ahead of now. So
an organisation's flood is at most ``burst`` requests at once, then one per interval, instead of a whole minute's
quota in its first seconds (docs/isolation.md measures what that does to other tenants).

A request is counted against all its policies by one statement: a multi-row upsert that inserts each row, or on
conflict counts it *only while that row's policy has room*, returning the rows it counted. A row missing from the
answer is a spent quota: the transaction is rolled back, so a refused request counts nothing anywhere (when the
organisation's quota refuses it, its key's count is not spent either), and it is answered 429 with the code of
the policy that refused it. On PostgreSQL the rows are locked in the order given: the key's first, the
organisation's (shared by all its requests) last, its uploads' just before, so they are held only until the
commit, and no two requests ever wait for each other in a cycle.

Answers carry the draft-ietf-httpapi-ratelimit-headers (-08 and later) structured fields, one item per policy:
``RateLimit-Policy: "default";q=100;w=60, "org";q=300;w=60`` and ``RateLimit: "default";r=42;t=17, "org";r=25;t=1``.
For a paced policy ``r`` is the burst left now and ``t`` the seconds until the whole burst is back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Float, Integer, and_, bindparam, case, func, or_
from sqlalchemy.dialects import postgresql, sqlite

from compliance.errors import RateLimited
from storage.db import Database, execute_compiled_once
from storage.models import RateCounter
from storage.settings import ApiSettings

KEY_RATE_LIMITED = "Request.RateLimited"
ORG_RATE_LIMITED = "Request.OrgRateLimited"

# A paced row's times are seconds since the epoch (~1.8e9, a float's step there ~2.4e-7 s), and each request adds
# an interval to them: a burst at one instant drifts by a few microseconds, which had refused the default burst's
# last request and shown one request fewer left. A thousandth of an interval early still counts as on time.
PACE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Policy:
    name: str
    quota: int
    window: int  # seconds
    code: str  # the 429's error code when this policy refuses
    setting: str  # where the quota is set
    burst: int | None = None  # None: fixed windows; else paced, at most this many at once (see the module's note)

    @property
    def interval(self) -> float:
        """A paced policy's seconds between two requests in the long run."""
        return self.window / self.quota

    def header(self) -> str:
        return f'"{self.name}";q={self.quota};w={self.window}'


@dataclass(frozen=True)
class Usage:
    policy: Policy
    remaining: int
    reset: int  # seconds until the window ends (a paced policy: until its whole burst is back)
    admitted: bool  # this policy had room (the request is admitted only when every one of its policies had)

    def header(self) -> str:
        return f'"{self.policy.name}";r={self.remaining};t={self.reset}'


def request_policies(api: ApiSettings, key_id: str, org_id: str, route_policy: str | None) -> list[tuple[str, Policy]]:
    """What a partner request counts against, the key's policies first (see the module's note on lock order).
    ``route_policy``: ``copies`` for a copy issuance, ``uploads`` for a document upload."""
    counts = [(key_id, Policy("default", *api.rate_limit, KEY_RATE_LIMITED, "EVAULT_RATE_LIMIT"))]
    if route_policy == "copies":
        counts.append((key_id, Policy("copies", *api.rate_limit_copies, KEY_RATE_LIMITED, "EVAULT_RATE_LIMIT_COPIES")))
    if route_policy == "uploads":
        burst, setting = api.rate_limit_org_upload_burst, "EVAULT_RATE_LIMIT_ORG_UPLOAD_BURST"
        counts.append((org_id, Policy("org-uploads", *api.rate_limit_org, ORG_RATE_LIMITED, setting, burst=burst)))
    org = Policy("org", *api.rate_limit_org, ORG_RATE_LIMITED, "EVAULT_RATE_LIMIT_ORG", burst=api.rate_limit_org_burst)
    counts.append((org_id, org))
    return counts


@cache
def _upsert(dialect_name: str, paced: tuple[bool, ...]) -> Any:
    """Insert each row, or count it while its policy has room; (policy, count, tat) of each counted row. Built
    once per dialect and kinds of rows, and compiled once (``execute_compiled_once``): building or compiling a
    statement costs more than running it."""
    dialect: Any = postgresql if dialect_name == "postgresql" else sqlite
    greatest = func.greatest if dialect_name == "postgresql" else func.max  # SQLite's max() of two is scalar
    table = RateCounter.__table__  # type: ignore[attr-defined]
    rows_in = [
        {
            "subject": bindparam(f"subject_{n}"),
            "policy": bindparam(f"policy_{n}"),
            "window_start": bindparam(f"window_start_{n}"),
            "count": 1,
            "tat": bindparam(f"tat_{n}", type_=Float),
        }
        for n in range(len(paced))
    ]
    statement = dialect.insert(table).values(rows_in)
    now = bindparam("now", type_=Float)
    next_tat = {
        n: greatest(func.coalesce(table.c.tat, now), now) + bindparam(f"interval_{n}", type_=Float)
        for n in range(len(paced))
        if paced[n]
    }
    room = [
        and_(
            statement.excluded.policy == bindparam(f"policy_{n}"),
            next_tat[n] <= bindparam(f"limit_{n}", type_=Float)
            if paced[n]
            else table.c.count < bindparam(f"quota_{n}", type_=Integer),
        )
        for n in range(len(paced))
    ]
    set_: dict[str, Any] = {"count": table.c.count + 1}
    if next_tat:
        set_["tat"] = case(
            *((statement.excluded.policy == bindparam(f"policy_{n}"), tat) for n, tat in next_tat.items()),
            else_=table.c.tat,
        )
    return statement.on_conflict_do_update(
        index_elements=["subject", "policy", "window_start"], set_=set_, where=or_(*room)
    ).returning(table.c.policy, table.c.count, table.c.tat)


def admit(db: Database, counts: Sequence[tuple[str, Policy]], now: float | None = None) -> list[Usage]:
    """Count one request against each (subject, policy), all or none; a policy appears at most once."""
    if len({policy.name for _, policy in counts}) != len(counts):
        raise ValueError("each policy may count a request once")
    now = time.time() if now is None else now
    params: dict[str, Any] = {"now": now}
    for n, (subject, policy) in enumerate(counts):
        params |= {f"subject_{n}": subject, f"policy_{n}": policy.name}
        if policy.burst is None:
            params |= {f"window_start_{n}": _window_start(policy, now), f"tat_{n}": None, f"quota_{n}": policy.quota}
        else:  # one row; the tolerance keeps floats' rounding from refusing the burst's last request
            limit = now + policy.burst * policy.interval + policy.interval * PACE_TOLERANCE
            params |= {f"window_start_{n}": 0, f"tat_{n}": now + policy.interval, f"interval_{n}": policy.interval}
            params[f"limit_{n}"] = limit
    paced = tuple(policy.burst is not None for _, policy in counts)
    statement = _upsert("postgresql" if db.url.startswith("postgresql") else "sqlite", paced)
    with db.session() as session:  # a write session: on SQLite it takes this process's write turn
        rows = execute_compiled_once(session.connection(), statement, params)
        counted = {str(policy): (int(count), tat) for policy, count, tat in rows}
        admitted = len(counted) == len(counts)
        if not admitted:
            session.rollback()  # a quota is spent: the request counts against none of its policies
    return [_usage(policy, counted.get(policy.name), admitted, now) for _, policy in counts]


def _window_start(policy: Policy, now: float) -> int:
    return int(now) // policy.window * policy.window


def _usage(policy: Policy, counted: tuple[int, float | None] | None, admitted: bool, now: float) -> Usage:
    """What is left of ``policy`` after this request (rolled back when not ``admitted``: its own count is not
    kept); ``counted`` is its row's (count, tat), None when this policy refused it."""
    if policy.burst is None:
        reset = max(1, _window_start(policy, now) + policy.window - int(now))
        if counted is None:
            return Usage(policy, 0, reset, admitted=False)
        count = counted[0] if admitted else counted[0] - 1
        return Usage(policy, policy.quota - count, reset, admitted=True)
    if counted is None:  # the row's tat was within an interval of its limit, so one interval frees a request
        return Usage(policy, 0, max(1, math.ceil(policy.interval)), admitted=False)
    tat = float(counted[1] or now) - (0 if admitted else policy.interval)
    left = math.floor((now + policy.burst * policy.interval - tat) / policy.interval + PACE_TOLERANCE)
    return Usage(policy, max(0, left), max(1, math.ceil(tat - now)), admitted=True)


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
