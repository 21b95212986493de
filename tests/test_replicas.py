"""Three ``evault serve`` replicas over one PostgreSQL and one store, under mixed load from clients that spread
their requests: one replica is SIGKILLed and restarted, PostgreSQL is restarted, and afterwards nothing is
vaulted or released twice, every acknowledged write is in the log, and ``evault verify`` is clean. The short
version of ``bench/replicas.py`` (which runs minutes); its own PostgreSQL cluster, so it runs once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers import bench_module
from tests.ports import port_range

pytestmark = pytest.mark.once


def test_replicas_survive_a_replica_kill_and_a_database_restart(tmp_path: Path) -> None:
    bench = bench_module("replicas")
    with bench._stack(port_range("replicas")[0], 3, tmp_path) as (env, ports, cluster):

        def restart_database() -> None:
            cluster.stop()
            time.sleep(2)
            cluster.start()

        report = bench.run(env, ports, tmp_path, seconds=24, clients=4, restart_database=restart_database)
    if not report["ok"]:  # each problem whole: an assertion's message is cut to its first 640 characters
        pytest.fail("\n".join(report["problems"]), pytrace=False)
    assert report["vaulted"] > 0 and report["released"] > 0
    assert all(count > 0 for count in report["answers_per_replica"].values()), report
    felt = [kind for kind in report["error_answers"] if kind.startswith(("connection", "503"))]
    assert felt, f"neither fault was felt: the test proved nothing ({report})"
