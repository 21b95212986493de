"""The process is a good citizen: it stops on signals, never outlives its store, fails fast and cleanly.

The ``evault serve`` tests run the real command in a subprocess, each with its own data directory, API port
and embedded store ports, and send it real signals. The PostgreSQL test starts a private cluster and really
stops it under a running vault.
"""

from __future__ import annotations

import base64
import os
import pty
import select as io_select
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar.testing import TestClient
from sqlmodel import col, func, select

from compliance.verifier import verify_vault
from compliance.witness.cosignature import CosignatureSigner
from storage.models import Envelope
from storage.settings import Settings, SettingsError
from tests.helpers import API, create_envelope
from tests.pg_cluster import PrivateCluster
from tests.ports import aux_port
from vault.api.app import create_app
from vault.runtime import open_runtime
from vault.tenancy import SCOPES, create_api_key, create_organisation

pytestmark = pytest.mark.once  # independent of the database under test: the SQLite pass only

ROOT = Path(__file__).resolve().parents[1]
STOP_WITHIN = 30  # seconds from SIGTERM to exit, weed's own shutdown included


# --- evault serve in a subprocess -------------------------------------------------------------------------


def _serve_env(data_dir: Path, port: int, port_base: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVAULT_")}
    env.update(
        PYTHONPATH=str(ROOT),
        EVAULT_DATA_DIR=str(data_dir),
        EVAULT_PORT=str(port),
        EVAULT_S3_EMBEDDED_PORT_BASE=str(port_base),
        EVAULT_CHECKPOINT_INTERVAL="1",
        **extra,
    )
    return env


def _serve(env: dict[str, str], stdout: Any = subprocess.PIPE) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "vault.cli.main", "serve"],
        env=env,
        cwd=ROOT,
        stdout=stdout,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"evault serve exited early with {proc.returncode}"
        try:
            if _get(port, "/ready")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError("evault serve did not become ready")


def _weed_pids(data_dir: Path) -> list[int]:
    """Live weed processes whose command line names this data directory."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if Path(argv[0].decode()).name == "weed" and str(data_dir).encode() in b" ".join(argv) and state != "Z":
            pids.append(int(entry.name))
    return pids


def _stop(proc: subprocess.Popen[bytes], sig: signal.Signals) -> tuple[int, float]:
    started = time.monotonic()
    proc.send_signal(sig)
    try:
        code = proc.wait(STOP_WITHIN + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"evault serve ignored {sig.name}") from None
    return code, time.monotonic() - started


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "vault"
    yield path
    for pid in _weed_pids(path):  # a failed test must not leave a weed behind for the next one
        os.kill(pid, signal.SIGKILL)


def test_sigterm_stops_service_and_weed_and_the_next_start_works(data_dir: Path) -> None:
    port = aux_port("lifecycle")
    env = _serve_env(data_dir, port, 32400)
    proc = _serve(env)
    _wait_ready(proc, port)
    assert _weed_pids(data_dir)
    code, took = _stop(proc, signal.SIGTERM)
    out, err = proc.communicate()
    assert (code, _weed_pids(data_dir)) == (0, []), err.decode()[-3000:]
    assert took < STOP_WITHIN
    # Not a terminal: the one-time key is in a 0600 file, whose path is printed, and not in the output.
    key_file = data_dir / "bootstrap-key.txt"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    raw_key = key_file.read_text().split("X-API-Key: ")[1].strip()
    assert str(key_file) in out.decode() and raw_key not in out.decode() + err.decode()

    again = _serve(env)  # right after, on the same data directory and ports
    _wait_ready(again, port)
    status, body = _get(port, f"{API}/envelopes/env_missing", {"X-API-Key": raw_key})
    assert (status, b"Envelope.NotFound" in body) == (404, True)  # the key from the file works
    code, took = _stop(again, signal.SIGINT)
    _, err = again.communicate()
    assert (code, _weed_pids(data_dir)) == (0, []), err.decode()[-3000:]
    assert took < STOP_WITHIN


def test_bootstrap_key_is_shown_on_a_terminal_and_not_written(data_dir: Path) -> None:
    port = aux_port("lifecycle")
    controller, terminal = pty.openpty()
    proc = _serve(_serve_env(data_dir, port, 32408), stdout=terminal)
    os.close(terminal)
    seen = bytearray()

    def drain() -> None:  # keep reading, or uvicorn blocks on a full terminal
        while True:
            ready, _, _ = io_select.select([controller], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # EIO: the child closed the terminal
                    return
                if not chunk:
                    return
                seen.extend(chunk)
            elif proc.poll() is not None:
                return

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        _wait_ready(proc, port)
        text = bytes(seen).decode()
        raw_key = text.split("X-API-Key: ")[1].split()[0]
        assert not (data_dir / "bootstrap-key.txt").exists()
        status, _ = _get(port, f"{API}/envelopes/env_missing", {"X-API-Key": raw_key})
        assert status == 404
        code, _ = _stop(proc, signal.SIGTERM)
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        reader.join(5)
        os.close(controller)


def test_when_weed_dies_the_service_exits_non_zero(data_dir: Path) -> None:
    port = aux_port("lifecycle")
    proc = _serve(_serve_env(data_dir, port, 32416))
    _wait_ready(proc, port)
    [weed] = _weed_pids(data_dir)
    os.kill(weed, signal.SIGKILL)
    try:
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("evault serve kept serving without its store") from None
    _, err = proc.communicate()
    assert code == 1
    assert b"embedded object store (weed) exited" in err


def test_a_busy_api_port_stops_the_start_before_anything_is_created(data_dir: Path) -> None:
    port = aux_port("lifecycle")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        proc = _serve(_serve_env(data_dir, port, 32424))
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err.decode()
    assert not data_dir.exists() and _weed_pids(data_dir) == []
    assert b"X-API-Key" not in out


def test_a_start_that_fails_after_weed_started_leaves_no_weed(data_dir: Path, tmp_path: Path) -> None:
    port = aux_port("lifecycle")
    env = _serve_env(data_dir, port, 32432, EVAULT_SIGNING_KEY=str(tmp_path / "missing.pem"))
    proc = _serve(env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert b"missing.pem does not exist" in err
    assert (data_dir / "s3" / "seaweedfs" / "weed.log").stat().st_size > 0  # weed did start
    assert _weed_pids(data_dir) == []
    with socket.socket() as probe:  # and nothing listens on its S3 port (TIME_WAIT remnants aside)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", 32432))


# --- PostgreSQL really stopped ----------------------------------------------------------------------------


def test_stopped_postgres_is_503_database_unavailable_then_recovers(
    vault_env: dict[str, str], private_pg: PrivateCluster
) -> None:
    env = {**vault_env, "EVAULT_DATABASE_URL": private_pg.url, "EVAULT_DATABASE_TIMEOUT": "2"}
    runtime = open_runtime(Settings.from_env(env))
    try:
        with TestClient(create_app(runtime)) as client:
            with runtime.db.session() as session:
                org = create_organisation(session, "Org")
                _, raw = create_api_key(session, org.id, "key", list(SCOPES))
            headers = {"X-API-Key": raw}
            first = create_envelope(client, headers)
            private_pg.stop()
            body = {"kind": "paper", "title": "Lost", "secured_party": {"name": "Bank"}}
            for method, path, kwargs in [
                ("get", f"{API}/envelopes/{first}", {}),
                ("post", f"{API}/envelopes", {"json": body}),
                ("get", "/ready", {}),
            ]:
                started = time.monotonic()
                response = getattr(client, method)(path, headers=headers, **kwargs)
                assert time.monotonic() - started < 5
                assert response.status_code == 503, response.text
                assert int(response.headers["retry-after"]) > 0
                if path == "/ready":
                    assert "database" in response.json()["details"]["failing"]
                else:
                    assert response.json()["code"] == "Database.Unavailable"
            private_pg.start()
            second = create_envelope(client, headers)
            assert client.get(f"{API}/envelopes/{first}", headers=headers).status_code == 200
        with runtime.db.read_session() as session:
            ids = set(session.exec(select(Envelope.id).where(col(Envelope.org_id) == org.id)))
            assert ids == {first, second}  # the refused POST left nothing behind
            assert session.exec(select(func.count()).select_from(Envelope)).one() == 2
        report = verify_vault(runtime.sources())
        assert report["clean"], report["findings"]
    finally:
        runtime.close()


# --- settings ---------------------------------------------------------------------------------------------


def test_settings_repr_hides_secrets() -> None:
    settings = Settings.from_env(
        {
            "EVAULT_DATABASE_URL": "postgresql://vault:db-Pa55word@db.internal:5432/evault",
            "EVAULT_S3_ENDPOINT": "https://s3.example.com",
            "EVAULT_S3_ACCESS_KEY": "AKIAEXAMPLE",
            "EVAULT_S3_SECRET_KEY": "s3-Secret-Value",
        }
    )
    shown = repr(settings)
    assert "db-Pa55word" not in shown and "s3-Secret-Value" not in shown
    assert "postgresql+psycopg://vault:***@db.internal:5432/evault" in shown
    assert settings.database_url.endswith("vault:db-Pa55word@db.internal:5432/evault")  # the real value is kept


def _vkey() -> str:
    return CosignatureSigner("witness.example", Ed25519PrivateKey.generate()).verifier().vkey


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"EVAULT_PORT": "70000"}, "EVAULT_PORT"),
        ({"EVAULT_PORT": "-1"}, "EVAULT_PORT"),
        ({"EVAULT_S3_EMBEDDED_PORT_BASE": "65530"}, "EVAULT_S3_EMBEDDED_PORT_BASE"),
        ({"EVAULT_S3_BUCKET": "Bad_Bucket"}, "EVAULT_S3_BUCKET"),
        ({"EVAULT_S3_BUCKET": "ab"}, "EVAULT_S3_BUCKET"),
        ({"EVAULT_S3_COPIES_BUCKET": "192.168.1.10"}, "EVAULT_S3_COPIES_BUCKET"),
        ({"EVAULT_S3_COPIES_BUCKET": "a..b"}, "EVAULT_S3_COPIES_BUCKET"),
        ({"EVAULT_WITNESSES": "https://w.example not-a-vkey"}, "EVAULT_WITNESSES"),
        ({"EVAULT_WITNESSES": "https://w.example " + _vkey()[:-4]}, "EVAULT_WITNESSES"),
        ({"EVAULT_TSA_URL": "https://tsa.example", "EVAULT_TSA_ROOTS": "/nonexistent.pem"}, "EVAULT_TSA_ROOTS"),
        ({"EVAULT_PUBLIC_URL": "ftp://x"}, "EVAULT_PUBLIC_URL"),
        ({"EVAULT_DATABASE_TIMEOUT": "0"}, "EVAULT_DATABASE_TIMEOUT"),
        # whole numbers in ASCII digits: int() would read these as 3, 1000, 2 and 5
        ({"EVAULT_PDF_WORKERS": "\u0663"}, "EVAULT_PDF_WORKERS"),
        ({"EVAULT_MAX_UPLOADS": "1_000"}, "EVAULT_MAX_UPLOADS"),
        ({"EVAULT_PORT": "\uff12"}, "EVAULT_PORT"),
        ({"EVAULT_LEASE_SECONDS": "+5"}, "EVAULT_LEASE_SECONDS"),
    ],
)
def test_a_bad_setting_stops_the_start_and_is_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_tsa_roots_must_be_pem_certificates(tmp_path: Path) -> None:
    roots = tmp_path / "roots.pem"
    roots.write_text(
        "-----BEGIN CERTIFICATE-----\n" + base64.b64encode(b"junk").decode() + "\n-----END CERTIFICATE-----\n"
    )
    with pytest.raises(SettingsError, match="EVAULT_TSA_ROOTS"):
        Settings.from_env({"EVAULT_TSA_URL": "https://tsa.example", "EVAULT_TSA_ROOTS": str(roots)})


def test_good_settings_load() -> None:
    vkey = _vkey()
    settings = Settings.from_env(
        {"EVAULT_WITNESSES": f"https://w.example {vkey}", "EVAULT_PORT": "0", "EVAULT_S3_BUCKET": "my.bucket-1"}
    )
    assert settings.vault.witnesses == (("https://w.example", vkey),)
    assert (settings.api.port, settings.s3.authoritative_bucket) == (0, "my.bucket-1")


def test_data_directory_and_database_files_are_private_under_a_permissive_umask(
    vault_env: dict[str, str], tmp_path: Path
) -> None:
    data_dir = tmp_path / "private-vault"
    env = {**vault_env, "EVAULT_DATA_DIR": str(data_dir), "EVAULT_DATABASE_URL": f"sqlite:///{data_dir / 'e.db'}"}
    old = os.umask(0)
    try:
        runtime = open_runtime(Settings.from_env(env))
        try:
            with runtime.db.session() as session:
                create_organisation(session, "Modes")  # a write, so the WAL and shared-memory files exist
        finally:
            runtime.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    files = [p for p in data_dir.iterdir() if p.name.startswith("e.db")]
    assert {p.name for p in files} >= {"e.db"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files), {p.name: oct(p.stat().st_mode) for p in files}
    key = data_dir / "vault-signing-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
