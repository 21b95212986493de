"""Background work runs once across processes: leases, their lapse, and leader election between real processes.

The election test runs two runtimes in their own processes over one database and one store, both with a
checkpointer; one is killed with SIGKILL and the other keeps the logs checkpointed within the lease TTL. Every
tenure of a checkpointer lease is logged by the process that holds it, so the test can check that no two
processes ever held one log's lease at once, and that every tenure's fencing token is new.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlmodel import func, select

from compliance.checkpoints.publisher import CheckpointService, checkpointer_lease
from compliance.errors import Unavailable
from storage.leases import give_up, holds, take_lease
from storage.models import Checkpoint as CheckpointRow
from storage.models import LogState
from tests.helpers import create_envelope, together
from vault.runtime import Runtime

TTL = 2  # EVAULT_LEASE_SECONDS in the election test: short, so that a takeover is quick to see

CHILD = """
import logging, sys, threading
from storage.settings import Settings
from vault.runtime import open_runtime
handler = logging.FileHandler(sys.argv[1])
handler.setFormatter(logging.Formatter("%(created).6f %(process)d %(message)s"))
checkpoints = logging.getLogger("evault.checkpoints")
checkpoints.addHandler(handler)
checkpoints.setLevel(logging.DEBUG)
runtime = open_runtime(Settings.from_env())
runtime.start_checkpointer()
print("ready", flush=True)
threading.Event().wait()
"""


def test_a_lease_has_one_holder_and_lapses_after_its_ttl(runtime: Runtime) -> None:
    db = runtime.db
    first = take_lease(db, "job", "a", timedelta(seconds=30))
    assert first is not None
    assert take_lease(db, "job", "b", timedelta(seconds=30)) is None
    assert take_lease(db, "job", "a", timedelta(seconds=30)) == first  # a renewal keeps the tenure
    assert take_lease(db, "job", "a", timedelta(milliseconds=300)) == first
    time.sleep(0.5)  # "a" stops renewing (it died): its lease lapses after the TTL
    second = take_lease(db, "job", "b", timedelta(seconds=30))
    assert second is not None and second.token == first.token + 1
    with db.session() as session:  # the stale tenure is fenced off
        assert not holds(session, first) and holds(session, second)
    give_up(db, "job", "a")  # not the holder: changes nothing
    assert take_lease(db, "job", "a", timedelta(seconds=30)) is None
    give_up(db, "job", "b")  # a clean stop hands over at once, with a new token
    third = take_lease(db, "job", "a", timedelta(seconds=30))
    assert third is not None and third.token == second.token + 1


def test_racing_takers_of_a_new_lease_get_one_tenure(runtime: Runtime) -> None:
    ttl = timedelta(seconds=30)
    for round_ in range(3):
        name = f"race-{round_}"  # a new row each round: its creation races too
        results = together(*[lambda n=name, h=f"h{i}": take_lease(runtime.db, n, h, ttl) for i in range(6)])
        assert not [r for r in results if isinstance(r, Exception)], results
        assert len([r for r in results if r is not None]) == 1, results


def test_two_checkpointers_racing_for_one_log_sign_each_size_once(
    client: TestClient[Any], runtime: Runtime, tenant: tuple[str, dict[str, str]]
) -> None:
    org_id, headers = tenant
    base = runtime.checkpoints
    services = [CheckpointService(base.db, base.worm, base.signer, base.origin_prefix, base.retention) for _ in "ab"]
    for _ in range(3):
        create_envelope(client, headers)
        results = together(*[lambda s=s: s.checkpoint_now(org_id) for s in services])
        signed = [r for r in results if isinstance(r, CheckpointRow)]
        busy = [r for r in results if isinstance(r, Unavailable)]
        assert signed and len(signed) + len(busy) == 2, results
        assert all(r.code == "Checkpoint.Busy" for r in busy)
        assert len({(r.size, r.note) for r in signed}) == 1  # the later one found the log covered already
    with runtime.db.read_session() as session:
        assert session.exec(select(func.count()).select_from(CheckpointRow)).one() == 3


def test_a_log_held_by_another_checkpointer_is_not_checkpointed(
    client: TestClient[Any], runtime: Runtime, tenant: tuple[str, dict[str, str]]
) -> None:
    org_id, headers = tenant
    create_envelope(client, headers)
    elsewhere = take_lease(runtime.db, checkpointer_lease(org_id), "another-replica", timedelta(seconds=30))
    assert elsewhere is not None
    with pytest.raises(Unavailable) as refused:
        runtime.checkpoints.checkpoint_now(org_id)
    assert refused.value.code == "Checkpoint.Busy" and refused.value.details["retry_after_seconds"] >= 1
    runtime.checkpoints.checkpoint_due(lambda org, exc: pytest.fail(f"{org}: {exc}"))  # skipped, not an error
    answer = client.post("/api/v2/partner/log/checkpoint", headers=headers)
    assert answer.status_code == 503 and answer.json()["code"] == "Checkpoint.Busy" and "Retry-After" in answer.headers
    with runtime.db.read_session() as session:
        assert session.exec(select(func.count()).select_from(CheckpointRow)).one() == 0
    give_up(runtime.db, checkpointer_lease(org_id), "another-replica")
    assert runtime.checkpoints.checkpoint_now(org_id).size > 0


def test_a_checkpointer_that_lost_its_lease_stores_nothing(
    client: TestClient[Any], runtime: Runtime, tenant: tuple[str, dict[str, str]]
) -> None:
    org_id, headers = tenant
    create_envelope(client, headers)
    base = runtime.checkpoints
    name = checkpointer_lease(org_id)

    class Stalling:
        """A cosigner slower than the lease: meanwhile another replica takes the log over."""

        def cosign(self, note: str, checkpoint: Any, proof_for: Any) -> str:
            time.sleep(0.4)
            assert take_lease(runtime.db, name, "another-replica", timedelta(seconds=30)) is not None
            return ""

    stalled = CheckpointService(
        base.db, base.worm, base.signer, base.origin_prefix, base.retention, [Stalling()], None, timedelta(seconds=0.2)
    )
    with pytest.raises(Unavailable) as refused:
        stalled.checkpoint_now(org_id)
    assert refused.value.code == "Checkpoint.Busy"
    with runtime.db.read_session() as session:
        assert session.exec(select(func.count()).select_from(CheckpointRow)).one() == 0
    give_up(runtime.db, name, "another-replica")  # the next tenure adopts the note the stalled one left in WORM
    assert base.checkpoint_now(org_id).size > 0


def _tenures(path: Path) -> list[tuple[str, int, int, float, float]]:
    """(lease, token, pid, taken, giving up) for every tenure a process logged: its work lies within them."""
    taken: dict[tuple[str, int], tuple[int, float]] = {}
    tenures = []
    for line in path.read_text().splitlines():
        found = re.match(r"(\S+) (\d+) lease (\S+) token (\d+) (taken|giving up) by", line)
        if found is None:
            continue
        at, pid, name, token, what = float(found[1]), int(found[2]), found[3], int(found[4]), found[5]
        if what == "taken":
            taken[(name, token)] = (pid, at)
        else:
            holder, since = taken.pop((name, token))
            assert holder == pid
            tenures.append((name, token, pid, since, at))
    tenures += [(name, token, pid, since, float("inf")) for (name, token), (pid, since) in taken.items()]
    return tenures


def _checkpointed(runtime: Runtime, org_id: str) -> tuple[int, int]:
    """(log size, size of the latest checkpoint)."""
    with runtime.db.read_session() as session:
        state = session.get(LogState, org_id)
        latest = session.exec(select(func.max(CheckpointRow.size)).where(CheckpointRow.org_id == org_id)).one()
    return (state.size if state else 0), (latest or 0)


def test_leader_election_between_two_processes_survives_sigkill(
    client: TestClient[Any],
    runtime: Runtime,
    vault_env: dict[str, str],
    make_key: Any,
    tmp_path: Path,
) -> None:
    orgs = [make_key() for _ in range(3)]
    env = {**os.environ, **vault_env, "EVAULT_CHECKPOINT_INTERVAL": "1", "EVAULT_LEASE_SECONDS": str(TTL)}
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, str(path)], env=env, stdout=subprocess.PIPE, text=True)
        for path in logs
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"

        def grow_and_wait(deadline: float) -> None:
            """Log new events for every organisation, then wait until every log is checkpointed again."""
            for _, raw in orgs:
                create_envelope(client, {"X-API-Key": raw})
            while True:
                sizes = [_checkpointed(runtime, org_id) for org_id, _ in orgs]
                if all(size == latest for size, latest in sizes):
                    return
                assert time.monotonic() < deadline, f"not checkpointed in time: {sizes}"
                time.sleep(0.1)

        for _ in range(4):  # both alive: they share the work
            grow_and_wait(time.monotonic() + 10)
        victim, survivor = children
        victim.send_signal(signal.SIGKILL)  # no clean stop: whatever it held must lapse
        victim.wait()
        killed_at = time.time()  # a tenure the victim had not given up ended here, at the latest
        for _ in range(4):  # the survivor takes every log over within the lease TTL (plus its round)
            grow_and_wait(time.monotonic() + TTL + 1 + 3)
        tenures = [
            (name, token, pid, since, killed_at if pid == victim.pid and until == float("inf") else until)
            for path in logs
            for name, token, pid, since, until in _tenures(path)
        ]
        assert {pid for _, _, pid, _, _ in tenures} == {victim.pid, survivor.pid}
        after_kill = [t for t in tenures if t[2] == survivor.pid and t[3] > time.time() - 30]
        assert after_kill
        by_log: dict[str, list[tuple[str, int, int, float, float]]] = defaultdict(list)
        for tenure in tenures:
            by_log[tenure[0]].append(tenure)
        assert set(by_log) == {checkpointer_lease(org_id) for org_id, _ in orgs}
        for name, held in by_log.items():
            tokens = [token for _, token, _, _, _ in held]
            assert len(tokens) == len(set(tokens)), f"{name}: a fencing token served two tenures"
            held.sort(key=lambda t: t[3])
            for before, after in pairwise(held):
                assert after[3] >= before[4], f"{name}: two checkpointers at once"
                assert after[1] > before[1], f"{name}: fencing tokens must grow"
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
                child.wait()
