"""``evault serve --workers N``: N processes answer on one port over PostgreSQL; SQLite refuses more than one.

Which worker answered is read from the kernel, not from the app: each keep-alive connection's server-side
socket belongs to the process that accepted it (/proc/<pid>/fd against /proc/net/tcp).
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import PG_URL, server_port

ROOT = Path(__file__).resolve().parent.parent
ESTABLISHED = "01"


def _serve(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "vault.cli.main", "serve", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _accepted_by(pids: list[int], port: int) -> dict[int, int]:
    """How many established connections to ``port`` each process holds the server side of."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == ESTABLISHED:
                inodes.add(fields[9])
    held = {}
    for pid in pids:
        sockets = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                sockets.add(target[len("socket:[") : -1])
        held[pid] = len(sockets & inodes)
    return held


def _wait_ready(proc: subprocess.Popen[str], port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"evault serve exited early: {proc.communicate()}"
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/ready")
            if connection.getresponse().status == 200:
                connection.close()
                return
            connection.close()
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError("evault serve --workers did not become ready")


def test_more_than_one_worker_on_sqlite_is_refused(tmp_path: Path, vault_env: dict[str, str]) -> None:
    sqlite = f"sqlite:///{tmp_path / 'refused.sqlite3'}"
    for args, extra in ((("--workers", "2"), {}), ((), {"EVAULT_WORKERS": "3"})):
        env = {**vault_env, "EVAULT_DATABASE_URL": sqlite, "EVAULT_PORT": str(server_port()), **extra}
        proc = _serve(env, *args)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 1
        assert "more than one worker needs PostgreSQL (EVAULT_DATABASE_URL): SQLite has a single writer" in err
        assert not (tmp_path / "refused.sqlite3").exists()  # refused before anything was created


@pytest.mark.skipif(not PG_URL, reason="more than one worker needs PostgreSQL: this runs in the PostgreSQL pass")
def test_two_workers_on_postgresql_answer_from_two_processes(vault_env: dict[str, str]) -> None:
    port = server_port()
    proc = _serve({**vault_env, "EVAULT_HOST": "127.0.0.1", "EVAULT_PORT": str(port)}, "--workers", "2")
    connections: list[http.client.HTTPConnection] = []
    try:
        _wait_ready(proc, port)
        workers = _children(proc.pid)

        def connect() -> http.client.HTTPConnection:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", "/ready")  # reads the database and the store: a worker is busy a while
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 200
            return connection  # kept open: its server side stays with the worker that accepted it

        accepted: dict[int, int] = {}
        for _ in range(10):  # rounds of connections opened at once, until both workers hold some
            with ThreadPoolExecutor(16) as pool:
                connections += pool.map(lambda _: connect(), range(16))
            accepted = _accepted_by(workers, port)
            if len([pid for pid, count in accepted.items() if count > 0]) >= 2:
                break
        answering = [pid for pid, count in accepted.items() if count > 0]
        assert len(answering) == 2, accepted
        assert sum(accepted.values()) == len(connections)
    finally:
        for connection in connections:
            connection.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("evault serve --workers ignored SIGTERM") from None
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
