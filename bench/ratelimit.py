"""The rate limit's cost per admitted request: ``vault.ratelimit.admit`` beside a raw single-row upsert.

Every partner request is counted by ``admit``: one conditional upsert, in a write transaction of its own, of the
key's fixed-window row, or of the key's row and its organisation's paced row together (``key + org``, what a
request with the default settings costs). Its floor is the least a shared counter can cost in the same
database: one raw ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` of a one-column counter, in a transaction
of its own, through the same driver with no ORM (``raw``). Phases alternate (raw, key, key + org; ``--rounds``
times, ``--calls`` requests each); the median round per phase is reported, as milliseconds per request and as
the ratio raw / ours (1.0: no cost above the floor).

    python bench/ratelimit.py [--calls N] [--rounds R] [--database-url postgresql+psycopg://...] [--json]

SQLite (a temporary file, the service's pragmas) unless ``--database-url`` names a PostgreSQL database, which
must be empty: the vault's tables are migrated into it and the raw counter is a table of its own, dropped after.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text

from storage.db import Database
from vault.ratelimit import Policy, admit

RAW_TABLE = "bench_raw_counter"
KEY = Policy("bench", 10**9, 60, "Request.RateLimited", "EVAULT_RATE_LIMIT")
ORG = Policy("bench-org", 10**9, 60, "Request.OrgRateLimited", "EVAULT_RATE_LIMIT_ORG", burst=10**9)


@contextmanager
def raw_upsert(db: Database) -> Iterator[Callable[[], None]]:
    """One counter row bumped in a transaction of its own, on a DBAPI connection of the same engine."""
    with db.engine.begin() as connection:
        connection.execute(text(f"CREATE TABLE {RAW_TABLE} (subject VARCHAR PRIMARY KEY, count INTEGER NOT NULL)"))
    raw = db.engine.raw_connection()
    sqlite = db.url.startswith("sqlite")
    statement = (
        f"INSERT INTO {RAW_TABLE} (subject, count) VALUES ('key_bench', 1) "
        "ON CONFLICT (subject) DO UPDATE SET count = " + RAW_TABLE + ".count + 1 RETURNING count"
    )

    def call() -> None:
        cursor = raw.cursor()
        if sqlite:
            cursor.execute("BEGIN IMMEDIATE")  # as the service's write sessions begin on SQLite
        cursor.execute(statement)
        (count,) = cursor.fetchone() or (0,)
        assert count > 0
        raw.commit()
        cursor.close()

    try:
        yield call
    finally:
        raw.close()
        with db.engine.begin() as connection:
            connection.execute(text(f"DROP TABLE {RAW_TABLE}"))


def ours(db: Database, counts: list[tuple[str, Policy]]) -> Callable[[], None]:
    def call() -> None:
        assert all(usage.admitted for usage in admit(db, counts))

    return call


def timed(call: Callable[[], None], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return time.perf_counter() - started


def run(db: Database, calls: int, rounds: int) -> dict[str, Any]:
    with raw_upsert(db) as raw:
        phases = {
            "raw": raw,
            "key": ours(db, [("key_bench", KEY)]),
            "key + org": ours(db, [("key_bench", KEY), ("org_bench", ORG)]),
        }
        for call in phases.values():  # warm: the rows exist, the statements are compiled and cached
            timed(call, 20)
        seconds: dict[str, list[float]] = {name: [] for name in phases}
        for _ in range(rounds):
            for name, call in phases.items():
                seconds[name].append(timed(call, calls))
    median = {name: statistics.median(runs) for name, runs in seconds.items()}
    return {
        "database": db.url.split(":", 1)[0],
        "calls": calls,
        "rounds": rounds,
        "ms_per_request": {name: median[name] / calls * 1000 for name in phases},
        "ratio_raw_over_ours": {name: median["raw"] / median[name] for name in phases if name != "raw"},
        "rounds_ms_per_request": {name: [s / calls * 1000 for s in runs] for name, runs in seconds.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=1000, help="requests per phase and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", default="", help="an empty PostgreSQL database (default: SQLite)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="evault-bench-ratelimit-") as workdir:
        db = Database(args.database_url or f"sqlite:///{Path(workdir) / 'ratelimit.db'}")
        db.migrate()
        try:
            result = run(db, args.calls, args.rounds)
        finally:
            db.dispose()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"rate-limit admission on {result['database']}, {args.calls} requests x {args.rounds} rounds (median)")
    print(f"{'phase':<12}{'ms/request':>12}{'raw/ours':>10}")
    for name, ms in result["ms_per_request"].items():
        ratio = result["ratio_raw_over_ours"].get(name)
        print(f"{name:<12}{ms:>12.3f}{'' if ratio is None else f'{ratio:>10.2f}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
