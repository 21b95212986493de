"""A throwaway PostgreSQL cluster that a test can stop and start under a running vault (own port, own data)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import aux_port


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    assert found, "PostgreSQL server binaries are required (apt-get install postgresql)"
    return found[-1].parent


class PrivateCluster:
    """A throwaway PostgreSQL cluster that a test can stop and start under a running vault."""

    def __init__(self, port: int) -> None:
        self.bin = _pg_bin()
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="evault-pg-"))  # not under pytest's 0700 directories
        self.data = self.root / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self.user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
        if os.geteuid() == 0:
            shutil.chown(self.root, self.user)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/postgres"

    def _as_pg(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.user, "--", *args] if os.geteuid() == 0 else list(args)

    def init(self) -> None:
        subprocess.run(
            self._as_pg(str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust", "--no-sync"),
            check=True,
            cwd="/",
            capture_output=True,
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.root}'\n"
                "fsync = off\n"
            )

    def start(self) -> None:
        log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen(
            self._as_pg(str(self.bin / "postgres"), "-D", str(self.data)), cwd="/", stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + 60
        while subprocess.run([str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode:
            assert self.proc.poll() is None and time.monotonic() < deadline, (self.root / "server.log").read_text()
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None:
            return
        subprocess.run(
            self._as_pg(str(self.bin / "pg_ctl"), "-D", str(self.data), "stop", "-m", "fast", "-w"),
            cwd="/",
            capture_output=True,
        )
        self.proc.wait(30)
        self.proc = None


@pytest.fixture
def private_pg() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster(aux_port("private_pg"))  # below the ephemeral range (32768-60999)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
