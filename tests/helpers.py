"""Small request helpers shared by the API tests."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Literal

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import Connection as DbConnection
from sqlalchemy.pool import NullPool

from storage.buckets import ensure_bucket
from storage.db import Database
from storage.embedded_s3 import EmbeddedS3
from storage.s3_client import make_s3_client
from storage.settings import EdgeSettings
from vault.api.server import HeaderDeadline, header_deadline_protocol, uvicorn_config

API = "/api/v2/partner"
# How far ahead a test sets a deadline it then waits out (an envelope's expiry, a transfer's): room for the
# requests that must come before it under the load of a CI pass (1 s was not: an envelope's creation on
# PostgreSQL arrived after its own expiry and was refused).
EXPIRY_LEAD = timedelta(seconds=3)


def bench_module(name: str) -> ModuleType:
    """``bench/<name>.py`` as a module (``bench/`` is scripts, not a package), registered in ``sys.modules`` so
    that its dataclasses resolve their annotations through it."""
    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def sleep_past(at: datetime, margin: float) -> None:
    """Sleep until ``at`` (aware) has passed, and ``margin`` seconds more: a deadline waited out by its own time."""
    time.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()) + margin)


def create_envelope(client: Any, headers: dict[str, str], kind: str = "paper", **extra: Any) -> str:
    body = {
        "kind": kind,
        "title": "Loan 1001",
        "external_id": f"loan-{uuid.uuid4().hex[:12]}",
        "parties": [{"name": "Ada Borrower", "email": "ada@example.com"}],
        "secured_party": {"name": "First Bank", "id": "bank-1"},
        **extra,
    }
    response = client.post(f"{API}/envelopes", json=body, headers=headers)
    assert response.status_code == 201, response.text
    envelope_id: str = response.json()["id"]
    return envelope_id


def upload(
    client: Any,
    headers: dict[str, str],
    envelope_id: str,
    data: bytes,
    *,
    flow: str = "upload",
    sha256: str | None = None,
) -> Any:
    extra = {"Content-Type": "application/pdf", "X-Content-SHA256": sha256 or hashlib.sha256(data).hexdigest()}
    return client.post(f"{API}/envelopes/{envelope_id}/vault-in-{flow}", content=data, headers={**headers, **extra})


def bound_listener(first: int, last: int) -> socket.socket:
    """A loopback socket already bound to a port in [first, last): handed to the server as it is, so no other
    run (the other database's pass runs at the same time) can take the port between the choice and the bind."""
    for port in range(first, last):
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            continue
        return sock
    raise RuntimeError(f"no free port in {first}-{last - 1}")


@contextmanager
def serving(
    app: Any, edge: EdgeSettings, first: int, last: int, *, parser: Literal["httptools", "h11"] = "httptools"
) -> Iterator[tuple[str, int]]:
    """``app`` served as ``evault serve`` serves it (its header deadline included), in a thread, on a loopback
    port in [first, last): (host, port). ``parser="h11"`` serves it with the fallback parser instead."""
    listener = bound_listener(first, last)
    config = uvicorn_config(app, edge, log_level="warning", lifespan="off")
    if parser == "h11":
        config.http = header_deadline_protocol(edge.header_timeout_seconds, HeaderDeadline)
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not running.started:
            assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
            time.sleep(0.05)
        yield listener.getsockname()
    finally:
        running.should_exit = True
        thread.join(20)
        listener.close()


def free_port(first: int, last: int) -> int:
    """A loopback port in [first, last) that nothing listens on now (tests keep to their own ranges)."""
    for port in range(first, last):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}-{last - 1}")


def server_port() -> int:
    """A free port for a server process a test starts, in this pass's own range (EVAULT_TEST_SERVE_PORT_BASE + 20
    to + 100): the SQLite and PostgreSQL passes run side by side with different bases, so never pick the same."""
    base = int(os.environ.get("EVAULT_TEST_SERVE_PORT_BASE", "23400"))
    return free_port(base + 20, base + 100)


def disarm_triggers(session: Any, table: str) -> None:
    """What a database owner can do: switch off a table's guard triggers. The WORM audit must still see."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        return
    query = text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :table")
    for name in list(session.execute(query, {"table": table}).scalars()):
        session.execute(text(f"DROP TRIGGER {name}"))


def bootstrap_key(line: str) -> str | None:
    """The one-time key ``evault serve`` announces on this output line: printed on a terminal, else in the
    0600 file whose path the line names."""
    if "X-API-Key: " in line:
        return line.split("X-API-Key: ", 1)[1].strip()
    if "key is in " in line:
        path = Path(line.split("key is in ", 1)[1].split(" (mode", 1)[0])
        return path.read_text().split("X-API-Key: ", 1)[1].strip()
    return None


def store_env(store: EmbeddedS3, suffix: str) -> dict[str, str]:
    """The S3 settings of a vault on ``store`` with fresh buckets of its own. The service identity cannot
    create buckets, so they are made here with the admin identity, as EmbeddedS3 does at start-up."""
    admin = store.admin_endpoint
    admin_client = make_s3_client(admin.url, admin.access_key, admin.secret_key, admin.region)
    ensure_bucket(admin_client, f"auth-{suffix}", object_lock=True)
    ensure_bucket(admin_client, f"copies-{suffix}", object_lock=False)
    service = store.endpoint
    return {
        "EVAULT_S3_ENDPOINT": service.url,
        "EVAULT_S3_ACCESS_KEY": service.access_key,
        "EVAULT_S3_SECRET_KEY": service.secret_key,
        "EVAULT_S3_BUCKET": f"auth-{suffix}",
        "EVAULT_S3_COPIES_BUCKET": f"copies-{suffix}",
        "EVAULT_S3_CREATE_BUCKETS": "false",
    }


def together(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls in threads released at once by a barrier (a race); return, in order, each call's result
    or the exception it raised (so a test can assert which one lost, and how)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[i] = call()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def send_head(
    address: tuple[str, int], path: str, headers: dict[str, str], length: int, body: bytes = b""
) -> socket.socket:
    """Send a request's head announcing ``length`` body bytes, and only ``body`` of them."""
    sock = socket.create_connection(address, timeout=30)
    lines = [f"POST {path} HTTP/1.1", f"Host: {address[0]}", f"Content-Length: {length}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Read one response (it must come while the body we announced is still unsent)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed without a response"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    return int(status_line.split()[1]), headers, json.loads(rest[:length] or b"{}")


def wait_serving(proc: subprocess.Popen[bytes], http: httpx.Client, seconds: float = 120) -> None:
    """Until ``evault serve`` (``proc``) answers ``/health`` on ``http``; it must not exit meanwhile."""
    deadline = time.monotonic() + seconds
    while True:
        assert proc.poll() is None, f"evault serve exited with {proc.returncode}"
        try:
            if http.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "evault serve did not start"
        time.sleep(0.3)


@contextmanager
def evault_serve(
    vault_env: dict[str, str], port: int, timeout: float = 120, log: IO[bytes] | None = None, **settings: str
) -> Iterator[tuple[subprocess.Popen[bytes], httpx.Client]]:
    """``evault serve`` in a subprocess on this test's database and store, with ``settings``, its output to
    ``log``, and a client of it once it serves; stopped after (SIGTERM, then SIGKILL) unless the test did."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVAULT_")}
    env.update(vault_env, EVAULT_PORT=str(port), PYTHONPATH=os.getcwd(), **settings)
    out = log if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "vault.cli.main", "serve"], env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=timeout) as http:
            wait_serving(proc, http)
            yield proc, http
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.wait()


def pipe_messages(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], list[int]]:
    """The sizes of the messages this process sends and receives on multiprocessing's connections (its worker
    pools' pipes) from now on, as (sent, received): what a document handed over as a memory file keeps out."""
    sent: list[int] = []
    received: list[int] = []
    send_bytes, recv_bytes = Connection._send_bytes, Connection._recv_bytes

    def counted_out(conn: Connection, buf: Any) -> None:
        sent.append(len(buf))
        send_bytes(conn, buf)

    def counted_in(conn: Connection, maxsize: int | None = None) -> Any:
        buf = recv_bytes(conn, maxsize)
        received.append(len(buf.getbuffer()))
        return buf

    monkeypatch.setattr(Connection, "_send_bytes", counted_out)
    monkeypatch.setattr(Connection, "_recv_bytes", counted_in)
    return sent, received


PG_URL = os.environ.get("EVAULT_TEST_DATABASE_URL", "")  # the PostgreSQL pass's server; empty: SQLite


@contextmanager
def own_database(tmp_path: Path, name: str) -> Iterator[str]:
    """A database of its own: a SQLite file under ``tmp_path``, or a PostgreSQL schema dropped afterwards."""
    if not PG_URL:
        yield f"sqlite:///{tmp_path / f'{name}.sqlite3'}"
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    sep = "&" if "?" in PG_URL else "?"
    with pg_admin() as admin:
        admin.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
        finally:
            admin.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def _pg_database(name: str) -> str:
    """The PostgreSQL pass's server URL, naming database ``name``."""
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


@contextmanager
def migrated_template(directory: Path) -> Iterator[str]:
    """A database migrated to head once, which :func:`copy_of` copies: a SQLite file under ``directory``, or a
    PostgreSQL database (dropped afterwards), named by what :func:`copy_of` takes. A migration from empty costs
    0.4 s on SQLite and 0.6 s on PostgreSQL; a copy 0.01 s and 0.13 s (CREATE DATABASE ... TEMPLATE)."""
    if not PG_URL:
        path = directory / "evault.sqlite3"
        template = Database(f"sqlite:///{path}")
        template.migrate()
        template.dispose()
        with closing(sqlite3.connect(path)) as connection:  # one self-contained file: leaving WAL checkpoints it
            connection.execute("PRAGMA journal_mode=DELETE")
        yield str(path)
        return
    name = f"tmpl_{uuid.uuid4().hex[:16]}"
    with pg_admin() as admin:
        admin.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            template = Database(_pg_database(name))
            template.migrate()
            template.dispose()  # a template takes no copies while anyone is connected to it
            yield name
        finally:
            admin.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))


@contextmanager
def copy_of(template: str, tmp_path: Path) -> Iterator[str]:
    """A database of its own starting as a copy of ``template`` (:func:`migrated_template`): a SQLite file under
    ``tmp_path``, or a PostgreSQL database dropped afterwards (its connections too: a test may leave one)."""
    if not PG_URL:
        path = tmp_path / "migrated.sqlite3"  # beside, not in place of, ``own_database``'s empty one
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    name = f"t_{uuid.uuid4().hex[:16]}"
    with pg_admin() as admin:
        admin.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        try:
            yield _pg_database(name)
        finally:
            admin.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))


@contextmanager
def pg_admin() -> Iterator[DbConnection]:
    """A connection to the PostgreSQL pass's server outside any transaction (CREATE DATABASE needs that)."""
    engine = create_engine(PG_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()
