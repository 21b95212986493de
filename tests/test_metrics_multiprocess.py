"""Several processes count into one ``/metrics``: the library's multiprocess mode, as ``evault serve`` sets it up.

Two worker processes increment the same counters and histogram at the same time; a third scrapes and must see
their sums. The test process itself imported ``prometheus_client`` in its in-memory mode, which is why the
setting must come first: :func:`use_multiprocess_dir` refuses once the library is imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.metrics_scrape import samples, value
from vault.metrics.multiproc import MULTIPROC_ENV, use_multiprocess_dir

pytestmark = pytest.mark.once  # no database under test

ROOT = Path(__file__).resolve().parents[1]

WORKER = """
import sys, time
from pathlib import Path
from vault.metrics.instruments import LATENCY, REQUESTS, VAULT_INS
n, go = int(sys.argv[1]), Path(sys.argv[2])
while not go.exists():  # both workers write at the same time
    time.sleep(0.01)
for _ in range(n):
    REQUESTS.labels("GET", "/api/v2/partner/envelopes", "200").inc()
    LATENCY.labels("GET", "/api/v2/partner/envelopes").observe(0.02)
VAULT_INS.inc(n)
print("done", flush=True)
"""

SCRAPER = """
import sys
from storage.db import Database
from vault.metrics.exposition import render, scrape_registry
print(render(scrape_registry(Database(sys.argv[1]), 300)).decode())
"""


def _python(code: str, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-c", code, *args]
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_add_up_in_one_scrape(tmp_path: Path) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), MULTIPROC_ENV: str(directory)}
    go = tmp_path / "go"
    workers = [_python(WORKER, env, str(n), str(go)) for n in (3, 5)]
    go.touch()
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert (worker.returncode, out.strip()) == (0, "done"), err
    assert len(list(directory.glob("*.db"))) >= 2  # one file per process
    scraper = _python(SCRAPER, env, f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    out, err = scraper.communicate(timeout=60)
    assert scraper.returncode == 0, err
    found = samples(out)
    route = {"method": "GET", "route": "/api/v2/partner/envelopes"}
    assert value(found, "evault_http_requests_total", status="200", **route) == 8
    assert value(found, "evault_http_request_duration_seconds_count", **route) == 8
    assert value(found, "evault_vault_ins_total") == 8
    assert value(found, "evault_metrics_database_up") == 0  # an unmigrated database: no gauges, still a scrape


def test_the_directory_must_be_set_before_the_library_is_imported(tmp_path: Path) -> None:
    import prometheus_client  # noqa: F401  (the test process has it: the conftest imports the app)

    with pytest.raises(RuntimeError, match="imported before"):
        use_multiprocess_dir(tmp_path / "prometheus")
    assert MULTIPROC_ENV not in os.environ
