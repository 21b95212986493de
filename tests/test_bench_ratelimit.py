"""docs/benchmarks.md's ``python bench/ratelimit.py`` runs as documented, on this pass's database, and reports a
ratio for each shape of admission. Its numbers are the bench's to report, not this test's to judge."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_rate_limit_bench_runs_and_reports_each_shape_beside_the_raw_upsert(database_url: str) -> None:
    command = [sys.executable, "bench/ratelimit.py", "--calls", "5", "--rounds", "2", "--json"]
    if database_url.startswith("postgresql"):  # an empty schema of its own, as the bench asks
        command += ["--database-url", database_url]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["database"] == database_url.split(":", 1)[0]
    assert set(result["ms_per_request"]) == {"raw", "key", "key + org"}
    assert set(result["ratio_raw_over_ours"]) == {"key", "key + org"}
    assert all(len(rounds) == 2 for rounds in result["rounds_ms_per_request"].values())
    assert all(ratio > 0 for ratio in result["ratio_raw_over_ours"].values())
