"""``evault verify`` beside a live ``evault serve``: it attaches, never starts or creates a vault, and says
"could not run" (exit 3) rather than "clean" when there is nothing to check.

The service runs as a real subprocess with its own data directory, embedded SeaweedFS (from
EVAULT_TEST_SERVE_PORT_BASE) and API port (the `verify_attach` range of tests/ports.py); verify runs in other
processes, as the nightly job does.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from storage.s3_client import make_s3_client
from tests.helpers import bootstrap_key, create_envelope, upload
from tests.pdf_factory import make_pdf
from tests.ports import aux_port

pytestmark = pytest.mark.once  # independent of the database under test: the SQLite pass only

REPO = Path(__file__).resolve().parent.parent
STORE_PORT_BASE = int(os.environ.get("EVAULT_TEST_SERVE_PORT_BASE", "23400"))


def _endpoint_file(data_dir: Path) -> Path:
    """Where the running server publishes how to reach its store."""
    return data_dir / "s3" / "seaweedfs" / "config" / "endpoint.json"


def _env(**values: str) -> dict[str, str]:
    """The test's environment without any EVAULT_ setting, plus ``values``; the code comes from this repo."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVAULT_")}
    return {**env, "PYTHONPATH": str(REPO), **values}


def _evault(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "vault.cli.main", *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=180, check=False)


class LiveService:
    """``evault serve`` in a subprocess; its stdout is read in a thread so the pipe never fills."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vault.cli.main", "serve"],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def api_key(self, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.output.append(line)
            key = bootstrap_key(line)
            if key is not None:
                return key
        raise AssertionError("evault serve did not start:\n" + "".join(self.output))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def live(tmp_path: Path, database_url: str) -> Iterator[tuple[LiveService, dict[str, str], str]]:
    port = aux_port("verify_attach")
    env = _env(
        EVAULT_DATA_DIR=str(tmp_path / "vault"),
        EVAULT_DATABASE_URL=database_url,
        EVAULT_S3_EMBEDDED_PORT_BASE=str(STORE_PORT_BASE),
        EVAULT_PORT=str(port),
        EVAULT_RETENTION_DAYS="1",
    )
    service = LiveService(env, tmp_path)
    try:
        yield service, env, f"http://127.0.0.1:{port}"
    finally:
        service.stop()


def _wait_healthy(url: str) -> None:
    for _ in range(200):
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("the API did not answer /health")


def test_verify_attaches_to_the_live_service(live: tuple[LiveService, dict[str, str], str], tmp_path: Path) -> None:
    service, env, url = live
    headers = {"X-API-Key": service.api_key()}
    _wait_healthy(url)
    with httpx.Client(base_url=url, timeout=30) as api:
        for _ in range(2):
            envelope_id = create_envelope(api, headers)
            assert upload(api, headers, envelope_id, make_pdf()).status_code == 201
        assert api.post("/api/v2/partner/log/checkpoint", headers=headers).status_code == 200

    done = _evault(["verify", "--report", str(tmp_path / "report.json")], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 objects, 0 copies" in done.stdout and "of 1 logs: clean" in done.stdout
    signed = json.loads((tmp_path / "report.json").read_text())
    assert signed["report"]["counts"]["objects"] == 2 and signed["report"]["verdict"] == "clean"
    assert service.proc.poll() is None  # the service still runs
    # The report checks offline against the vault's public key alone (endorsement, then signature).
    vault_pem = str(tmp_path / "vault" / "vault-signing-key.pub")
    checked = _evault(["report", "verify", str(tmp_path / "report.json"), "--public-key", vault_pem], env, tmp_path)
    assert checked.returncode == 0 and "OK: report of run vr_" in checked.stdout, checked.stdout + checked.stderr
    keys = httpx.get(f"{url}/.well-known/evault/keys").json()["keys"]
    assert [k["use"] for k in keys] == ["checkpoint", "document-signing", "report-signing"]
    assert keys[2]["pem"] == signed["signature"]["report_key"]["pem"]
    signed["report"]["verdict"] = "findings"  # a report changed after signing
    (tmp_path / "changed.json").write_text(json.dumps(signed))
    refused = _evault(["report", "verify", str(tmp_path / "changed.json"), "--public-key", vault_pem], env, tmp_path)
    assert refused.returncode == 1 and "Report.BadSignature" in refused.stderr

    # A second version planted under an authoritative key, with the store's admin credentials.
    published: dict[str, Any] = json.loads(_endpoint_file(tmp_path / "vault").read_text())
    admin = make_s3_client(published["url"], published["access_key"], published["secret_key"], published["region"])
    listed = admin.list_objects_v2(Bucket="evault-authoritative", Prefix="authoritative/")
    admin.put_object(Bucket="evault-authoritative", Key=listed["Contents"][0]["Key"], Body=b"%PDF-1.7 planted")
    found = _evault(["verify"], env, tmp_path)
    assert found.returncode == 2, found.stdout + found.stderr
    assert "Object.ExtraVersion" in found.stdout

    # Once the service has stopped, there is no store to attach to: could not run, not clean.
    service.stop()
    assert not _endpoint_file(tmp_path / "vault").exists()
    stopped = _evault(["verify"], env, tmp_path)
    assert stopped.returncode == 3, stopped.stdout + stopped.stderr
    assert "Attach.StoreNotRunning" in stopped.stderr


def test_verify_in_an_empty_directory_could_not_run_and_creates_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = _evault(["verify"], _env(), empty)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Attach.NoVault" in done.stderr and "clean" not in done.stdout
    assert list(empty.iterdir()) == []


def test_verify_refuses_a_database_without_the_evault_schema(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    connection = sqlite3.connect(data / "evault.sqlite3")
    connection.execute("CREATE TABLE unrelated (x)")
    connection.commit()
    connection.close()
    done = _evault(["verify"], _env(EVAULT_DATA_DIR=str(data)), tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Attach.NoVault" in done.stderr
    assert sorted(p.name for p in data.iterdir()) == ["evault.sqlite3"]
