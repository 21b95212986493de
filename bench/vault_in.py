"""Vault-in benchmark: 1 MiB PDFs through the real HTTP API against raw puts to the same embedded SeaweedFS.

One run starts the real stack (``open_vault`` with the locked-down embedded SeaweedFS and SQLite under a temp
directory, ``create_app`` served by uvicorn), creates ``--count`` paper envelopes per round (untimed) and then
times only the ``POST /envelopes/{id}/vault-in-upload`` requests, sent by ``--concurrency`` httpx clients.

The floors, measured in the same run with the vault's own boto3 client and the same bytes and concurrency:

- ``raw-lock``: ``put_object`` with ``ChecksumSHA256`` and ``ObjectLockMode='COMPLIANCE'`` + retain-until into
  a fresh Object Lock bucket (what ``/work/shared/notes/seaweedfs.md`` calls the raw baseline);
- ``raw-plain``: ``put_object`` without lock or checksum into a fresh plain bucket, for context.

Phases are interleaved (raw-lock, raw-plain, service; repeated ``--rounds`` times) and each reports the median
round; latency percentiles pool every request of every round.

    python bench/vault_in.py [--count N] [--concurrency C] [--rounds R] [--server thread|process] [--json]
        [--stages] [--before CHECKOUT] [--workers N] [--database-url postgresql+psycopg://...]

``--before CHECKOUT`` serves a second API process from another checkout (e.g. ``git worktree add`` of the
previous commit) over the same store and database, and interleaves its ``before`` phase with ``service`` in
every round, so that a change is measured against its predecessor on the same machine at the same moment.
``--workers N`` serves the API as ``evault serve --workers N`` (more than one needs PostgreSQL).
``--stages`` times each step of a vault-in in the API process (wall and, for the steps that run in a worker
thread, that thread's CPU), counts its SQL statements, transactions and S3 requests, and the event loop's CPU.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import importlib
import inspect
import json
import logging
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from storage.buckets import ensure_bucket
from storage.s3_client import make_s3_client
from storage.settings import Settings
from vault.api.app import create_app
from vault.api.server import uvicorn_config
from vault.runtime import Runtime, open_runtime
from vault.tenancy import bootstrap

ROOT = Path(__file__).resolve().parents[1]
API = "/api/v2/partner"
BENCH_RATE_LIMIT = "1000000/60"
RATIO_AIMS = {"upload": 0.5, "signed": 0.3}  # service / raw-lock on 2 cores, per flow (issue 25)
FLOORS = {"floor": True, "floor-io": False}  # --floor's phases: bench/stack_floor.py with its PDF work, and without
MIB = 1 << 20
DEFAULT_PORT_BASE = 26430  # below Linux's ephemeral range (32768+), where ports collide


def load_make_pdf() -> Callable[..., bytes]:
    """``tests.pdf_factory.make_pdf``; ``tests`` is not an installed package, so put the checkout on the path."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    make_pdf: Callable[..., bytes] = importlib.import_module("tests.pdf_factory").make_pdf
    return make_pdf


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- timing -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Round:
    seconds: float
    latencies: list[float]
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds this round, per process group


def run_concurrently(count: int, concurrency: int, work: Callable[[int, int], None]) -> Round:
    """Call ``work(worker, i)`` for every ``i < count`` from ``concurrency`` threads; time the whole batch."""
    latencies = [0.0] * count
    next_index = iter(range(count))
    lock = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(concurrency + 1)

    def worker(number: int) -> None:
        start.wait()
        while not errors:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            t0 = time.perf_counter()
            try:
                work(number, i)
            except BaseException as exc:
                errors.append(exc)
                return
            latencies[i] = time.perf_counter() - t0

    threads = [threading.Thread(target=worker, args=(n,), name=f"bench-{n}") for n in range(concurrency)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return Round(seconds, latencies)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True)
class PhaseResult:
    name: str
    objects_per_s: float  # median over rounds
    mb_per_s: float  # MiB/s, median over rounds
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rounds_objects_per_s: list[float]
    cpu_ms_per_object: dict[str, float]  # per process group, over every round

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "objects_per_s": round(self.objects_per_s, 2),
            "mib_per_s": round(self.mb_per_s, 2),
            "p50_ms": round(self.p50_ms, 1),
            "p95_ms": round(self.p95_ms, 1),
            "p99_ms": round(self.p99_ms, 1),
            "rounds_objects_per_s": [round(v, 2) for v in self.rounds_objects_per_s],
            "cpu_ms_per_object": {k: round(v, 2) for k, v in self.cpu_ms_per_object.items()},
        }


def summarise(name: str, rounds: list[Round], size: int) -> PhaseResult:
    rates = [len(r.latencies) / r.seconds for r in rounds]
    pooled = [lat for r in rounds for lat in r.latencies]
    rate = statistics.median(rates)
    groups = {group for r in rounds for group in r.cpu}
    cpu = {g: 1000 * sum(r.cpu.get(g, 0.0) for r in rounds) / len(pooled) for g in sorted(groups)}
    return PhaseResult(
        name=name,
        objects_per_s=rate,
        mb_per_s=rate * size / MIB,
        p50_ms=percentile(pooled, 0.50) * 1000,
        p95_ms=percentile(pooled, 0.95) * 1000,
        p99_ms=percentile(pooled, 0.99) * 1000,
        rounds_objects_per_s=rates,
        cpu_ms_per_object=cpu,
    )


# --- CPU per process group: where the two cores go ----------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SERVER_PIDS: dict[int, str] = {}  # the API children (--server process, --before, --floor) by pid: their phase


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(comm, parent pid, CPU seconds) of a live process, from /proc/<pid>/stat: its own and that of the children
    it has reaped (the stamper's forkserver reaps the vetting and stamping children, which live milliseconds)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return comm, int(fields[1]), sum(int(v) for v in fields[11:15]) / CLOCK_TICKS  # utime stime cutime cstime


def cpu_snapshot(phase: str = "service") -> dict[str, float]:
    """CPU seconds so far of this process (clients, the store's relay, and the API with --server thread), the
    API child serving ``phase`` (with its stamper children), and the SeaweedFS processes: every descendant of
    this process. The other API children (``before``, the floors), idle in this phase, count as "idle"; with
    --server thread the stamper's forkserver and its vetting and stamping children count as "other"."""
    stats = {int(d): st for d in os.listdir("/proc") if d.isdigit() and (st := _stat(int(d))) is not None}
    children: dict[int, list[int]] = {}
    for pid, (_, parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    totals = {"bench": stats[os.getpid()][2], "api": 0.0, "weed": 0.0, "other": 0.0, "idle": 0.0}
    stack: list[tuple[int, str | None]] = [(child, None) for child in children.get(os.getpid(), [])]
    while stack:
        pid, group = stack.pop()
        comm, _, cpu = stats[pid]
        if group is None and pid in SERVER_PIDS:
            group = "api" if SERVER_PIDS[pid] == phase else "idle"
        group = group or ("weed" if comm == "weed" else None)
        totals[group or "other"] += cpu
        stack.extend((child, group) for child in children.get(pid, []))
    return totals


def timed_cpu(run: Callable[[], Round], phase: str = "service") -> Round:
    before = cpu_snapshot(phase)
    done = run()
    after = cpu_snapshot(phase)
    return replace(done, cpu={name: after[name] - before[name] for name in after})


# --- optional per-stage timing of the service (``--stages``, thread server only) -------------------------------


class Stages:
    """Wall time (and the calling thread's CPU) spent in each step of a vault-in, gathered by wrapping the
    service's functions in place; SQL statements, transactions and S3 requests are counted by event hooks."""

    def __init__(self) -> None:
        self.times: dict[str, list[tuple[float, float]]] = {}  # name: [(wall, thread CPU or NaN)]
        self.lock = threading.Lock()
        self.enabled = False
        self.loop_cpu = 0.0  # CPU of the event loop's thread while enabled (process server)
        self._loop_t0 = 0.0

    def add(self, name: str, seconds: float, cpu: float = float("nan")) -> None:
        if self.enabled:
            with self.lock:
                self.times.setdefault(name, []).append((seconds, cpu))

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        inner = getattr(owner, attr, None)
        if inner is None:  # an older checkout (--before) may not have this step
            return
        if inspect.iscoroutinefunction(inner):

            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return await inner(*args, **kwargs)
                finally:
                    self.add(name, time.perf_counter() - t0)

            setattr(owner, attr, timed_async)
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - t0, time.thread_time() - c0)

        setattr(owner, attr, timed)

    def install(self, runtime: Runtime) -> None:
        from sqlalchemy import event

        from storage.object_store import ObjectStore

        custody = importlib.import_module("vault.api.custody")
        vault_in = importlib.import_module("vault.vault_in")
        edge = importlib.import_module("vault.api.edge")
        upload_body = importlib.import_module("vault.api.upload_body")
        conventions = importlib.import_module("vault.api.conventions")
        self.wrap(edge, "_authenticate", "edge: API key + rate limit (db)")
        self.wrap(upload_body, "_raw", "body: receive + spool + sha256 (event loop, wall)")
        self.wrap(vault_in, "settle", "settle: expiry look (db)")
        self.wrap(vault_in, "_look", "envelope + retention look (db)")
        self.wrap(vault_in, "check_uploads", "check_uploads: vetting (+ signatures)")
        self.wrap(vault_in, "inspect_pdf", "  of which: vetting + rehearsal (worker)")
        self.wrap(vault_in, "_claim", "_claim: lock envelope + claim txn (db)")
        self.wrap(ObjectStore, "_put", "s3 put_object (lock + checksum)")
        self.wrap(ObjectStore, "_check_lock", "s3 head_object (lock read-back)")
        self.wrap(vault_in, "record_claim", "record_claim: record + ledger txn (db)")
        self.wrap(conventions, "describe", "  of which: the answer (describe)")
        self.wrap(custody, "_replayed", "_replayed (db)")
        self.wrap(custody, "vault_in", "vault_in() total (worker thread)")
        engines = {id(e): e for e in (runtime.db.engine, runtime.db.read_engine)}
        for engine in engines.values():

            @event.listens_for(engine, "before_cursor_execute")
            def _before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
                conn.info["bench_t0"] = time.perf_counter()

            @event.listens_for(engine, "after_cursor_execute")
            def _after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
                seconds = time.perf_counter() - conn.info.pop("bench_t0", time.perf_counter())
                self.add("db: BEGIN (SQLite)" if statement.startswith("BEGIN") else "db: statements", seconds)

            @event.listens_for(engine, "begin")
            def _begin(conn: Any) -> None:
                self.add("db: transactions", 0.0)

        def _s3(event_name: str, **_: Any) -> None:
            self.add(f"s3 requests: {event_name.rsplit('.', 1)[-1]}", 0.0)

        runtime.s3_client.meta.events.register("before-call.s3", _s3)

    def start(self) -> None:
        self._loop_t0 = time.thread_time()
        self.enabled = True

    def stop(self) -> None:
        self.enabled = False
        self.loop_cpu += time.thread_time() - self._loop_t0

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"stage": name, "calls": len(v), "wall": sum(w for w, _ in v), "cpu": sum(c for _, c in v)}
            for name, v in self.times.items()
        ]

    @staticmethod
    def report(rows: list[dict[str, Any]], requests: int) -> list[dict[str, Any]]:
        return [
            {
                "stage": row["stage"],
                "calls_per_request": round(row["calls"] / requests, 2),
                "wall_ms_per_request": round(row["wall"] / requests * 1000, 2),
                "cpu_ms_per_request": None if row["cpu"] != row["cpu"] else round(row["cpu"] / requests * 1000, 2),
            }
            for row in rows
        ]


# --- the server -------------------------------------------------------------------------------------------------


@contextmanager
def serve_in_thread(runtime: Runtime, port: int) -> Iterator[str]:
    app = create_app(runtime)
    config = uvicorn_config(
        app, runtime.settings.edge, host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


SERVER_PEAK_RSS: dict[str, int] = {}  # VmHWM of each server child by phase, read just before it is stopped


def peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class ApiProcess:
    """An API child: its base URL, pid, and (with --stages) the file its stage timings are dumped to."""

    base_url: str
    pid: int
    stages_file: Path | None

    def stages(self, enable: bool) -> None:
        """SIGUSR1 starts the child's stage timing, SIGUSR2 stops it and dumps what it gathered so far."""
        if self.stages_file is None:
            return
        if enable:
            os.kill(self.pid, signal.SIGUSR1)
            return
        self.stages_file.unlink(missing_ok=True)
        os.kill(self.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 30
        while not self.stages_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    def stage_rows(self) -> tuple[list[dict[str, Any]], float]:
        if self.stages_file is None or not self.stages_file.exists():
            return [], 0.0
        dumped = json.loads(self.stages_file.read_text())
        return dumped["rows"], dumped["loop_cpu"]


@contextmanager
def serve_in_process(
    runtime: Runtime,
    port: int,
    *,
    root: Path = ROOT,
    workers: int = 0,
    stages_file: Path | None = None,
    loop: str = "auto",
    http: str = "auto",
    extra_env: dict[str, str] | None = None,
    phase: str = "service",
) -> Iterator[ApiProcess]:
    """The API in its own process (as deployed), sharing the embedded SeaweedFS, database and signing key.

    ``root``: the checkout whose code serves (another one with --before; this file's stage hooks still apply).
    ``workers``: run ``evault serve --workers N`` itself instead of this file's quiet single-process child.
    ``extra_env``: more settings for the API process (a caller's own limits). ``phase``: whose CPU it is."""
    assert runtime.embedded_s3 is not None
    endpoint = runtime.embedded_s3.endpoint
    env = {
        **os.environ,
        "PYTHONPATH": str(root),  # before the editable install's finder, so --before's code is what runs
        "EVAULT_DATA_DIR": str(runtime.settings.data_dir),
        "EVAULT_DATABASE_URL": runtime.settings.database_url,
        "EVAULT_S3_ENDPOINT": endpoint.url,
        "EVAULT_S3_ACCESS_KEY": endpoint.access_key,
        "EVAULT_S3_SECRET_KEY": endpoint.secret_key,
        "EVAULT_S3_REGION": endpoint.region,
        "EVAULT_S3_CREATE_BUCKETS": "false",
        "EVAULT_SIGNING_KEY": str(runtime.settings.vault.signing_key_path),
        "EVAULT_MAX_UPLOAD_BYTES": str(runtime.settings.vault.max_upload_bytes),
        "EVAULT_MAX_UPLOADS_PER_KEY": str(runtime.settings.edge.max_uploads_per_key),
        "EVAULT_MAX_UPLOADS_PER_ORG": str(runtime.settings.edge.max_uploads_per_org),
        "EVAULT_MAX_UPLOADS": str(runtime.settings.edge.max_uploads),
        "EVAULT_HOST": "127.0.0.1",
        "EVAULT_PORT": str(port),
        "EVAULT_RATE_LIMIT": BENCH_RATE_LIMIT,
        "EVAULT_METRICS_PORT": "0",
        "EVAULT_BENCH_STAGES": str(stages_file or ""),
        "EVAULT_BENCH_LOOP": loop,
        "EVAULT_BENCH_HTTP": http,
        **(extra_env or {}),
    }
    command = [sys.executable, __file__, "--serve-child"]
    if workers:
        command = [sys.executable, "-m", "vault.cli.main", "serve", "--workers", str(workers)]
    log = runtime.settings.data_dir / f"serve-{port}.log" if workers else None  # its info lines
    with _child(command, env, root, port, phase, log) as child:
        yield ApiProcess(f"http://127.0.0.1:{port}", child.pid, stages_file)


@contextmanager
def serve_floor(runtime: Runtime, port: int, bucket: str, *, pdf: bool, phase: str) -> Iterator[str]:
    """``bench/stack_floor.py`` in its own process over the same store and database (tables of its own), writing
    to ``bucket``; ``pdf``: with its PDF work (a floor of the whole vault-in), else transport only."""
    assert runtime.embedded_s3 is not None
    endpoint, admin = runtime.embedded_s3.endpoint, runtime.embedded_s3.admin_endpoint
    ensure_bucket(make_s3_client(admin.url, admin.access_key, admin.secret_key, admin.region), bucket, object_lock=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "EVAULT_FLOOR_PORT": str(port),
        "EVAULT_FLOOR_PDF": "1" if pdf else "0",
        "EVAULT_FLOOR_BUCKET": bucket,
        "EVAULT_FLOOR_DATABASE_URL": runtime.settings.database_url,
        "EVAULT_FLOOR_S3_URL": endpoint.url,
        "EVAULT_FLOOR_S3_ACCESS_KEY": endpoint.access_key,
        "EVAULT_FLOOR_S3_SECRET_KEY": endpoint.secret_key,
        "EVAULT_FLOOR_S3_REGION": endpoint.region,
    }
    with _child([sys.executable, str(ROOT / "bench" / "stack_floor.py")], env, ROOT, port, phase, None):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def _child(
    command: list[str], env: dict[str, str], cwd: Path, port: int, phase: str, log: Path | None
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process, counted as ``phase``'s CPU, once its ``/health`` answers 200; stopped on the way out.
    ``log``: where its output goes (shown if it does not start), else this process's own."""
    with ExitStack() as files:
        out = files.enter_context(log.open("wb")) if log else None
        child = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT if out else None)
    SERVER_PIDS[child.pid] = phase
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # spawned workers import everything again: slow on a loaded machine
        while True:
            if child.poll() is not None or time.monotonic() > deadline:
                said = log.read_text(errors="replace")[:3000] if log else ""
                raise RuntimeError(f"the server process {command[1:]} did not start\n{said}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield child
    finally:
        if child.poll() is None:
            SERVER_PEAK_RSS[phase] = peak_rss(child.pid)
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        SERVER_PIDS.pop(child.pid, None)


def serve_child() -> int:
    """Entry point of the ``--server process`` child: what ``evault serve`` does, with quiet logs; with
    ``EVAULT_BENCH_STAGES`` (a file) it times its stages between SIGUSR1 and SIGUSR2 and dumps them there."""
    settings = Settings.from_env()
    runtime = open_runtime(settings)
    stages_file = os.environ.get("EVAULT_BENCH_STAGES", "")
    try:
        if stages_file:
            stages = Stages()
            stages.install(runtime)

            def stop_and_dump(*_: Any) -> None:
                stages.stop()
                rows = stages.rows()
                Path(stages_file + ".tmp").write_text(json.dumps({"rows": rows, "loop_cpu": stages.loop_cpu}))
                os.replace(stages_file + ".tmp", stages_file)

            # Signal handlers run in the main thread, which is the event loop's: thread_time() there is its CPU.
            signal.signal(signal.SIGUSR1, lambda *_: stages.start())
            signal.signal(signal.SIGUSR2, stop_and_dump)
        runtime.start_checkpointer()
        app = create_app(runtime)
        options = {"host": settings.api.host, "port": settings.api.port, "log_level": "warning", "access_log": False}
        config = uvicorn_config(app, settings.edge, loop=os.environ.get("EVAULT_BENCH_LOOP", "auto"), **options)
        if os.environ.get("EVAULT_BENCH_HTTP") == "h11":  # the pure-Python parser, with the same header deadline
            server = importlib.import_module("vault.api.server")
            config.http = server.header_deadline_protocol(settings.edge.header_timeout_seconds, server.HeaderDeadline)
        uvicorn.Server(config).run()
    finally:
        runtime.close()
    return 0


# --- the workloads ----------------------------------------------------------------------------------------------


def b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class Bench:
    def __init__(
        self,
        runtime: Runtime,
        base_urls: dict[str, str],
        api_key: str,
        pdfs: list[bytes],
        concurrency: int,
        flow: str = "upload",
        floors: dict[str, str] | None = None,
    ) -> None:
        self.flow = flow
        self.floors = floors or {}
        self.vault = runtime
        self.s3 = runtime.s3_client
        self.pdfs = pdfs
        self.concurrency = concurrency
        self.headers = {"X-API-Key": api_key}
        self.base_urls = {**base_urls, **self.floors}
        self.tls = ssl.create_default_context()  # unused (plain http), but httpx builds one per client: ~40 ms
        self.servers = {name: self._clients(name) for name in self.base_urls}
        stamp = time.strftime("%H%M%S")
        self.lock_bucket = f"bench-lock-{stamp}"
        self.plain_bucket = f"bench-plain-{stamp}"
        # The service identity cannot create buckets: the embedded store's admin identity makes them.
        assert runtime.embedded_s3 is not None
        admin = runtime.embedded_s3.admin_endpoint
        admin_s3 = make_s3_client(admin.url, admin.access_key, admin.secret_key, admin.region)
        ensure_bucket(admin_s3, self.lock_bucket, object_lock=True)
        admin_s3.create_bucket(Bucket=self.plain_bucket)

    def _clients(self, server: str) -> list[httpx.Client]:
        return [
            httpx.Client(base_url=self.base_urls[server], timeout=120, verify=self.tls) for _ in range(self.concurrency)
        ]

    def _fresh_clients(self, server: str) -> list[httpx.Client]:
        """New connections for a timed phase. One left idle since the server's last phase may be closed by its
        keep-alive timeout just as a request goes out on it, and httpx does not retry the POST (seen with
        ``--count 90``: "Server disconnected without sending a response")."""
        for client in self.servers[server]:
            client.close()
        self.servers[server] = self._clients(server)
        return self.servers[server]

    def close(self) -> None:
        for clients in self.servers.values():
            for client in clients:
                client.close()

    def raw_lock(self, tag: str, count: int) -> Round:
        retain_until = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)

        def put(_: int, i: int) -> None:
            data = self.pdfs[i % len(self.pdfs)]
            self.s3.put_object(
                Bucket=self.lock_bucket,
                Key=f"{tag}/{i:06d}.pdf",
                Body=data,
                ContentType="application/pdf",
                ChecksumSHA256=b64_sha256(data),
                ObjectLockMode="COMPLIANCE",
                ObjectLockRetainUntilDate=retain_until,
            )

        return run_concurrently(count, self.concurrency, put)

    def raw_plain(self, tag: str, count: int) -> Round:
        def put(_: int, i: int) -> None:
            data = self.pdfs[i % len(self.pdfs)]
            self.s3.put_object(
                Bucket=self.plain_bucket, Key=f"{tag}/{i:06d}.pdf", Body=data, ContentType="application/pdf"
            )

        return run_concurrently(count, self.concurrency, put)

    def create_envelopes(self, tag: str, count: int) -> list[str]:
        ids = [""] * count
        clients = self._fresh_clients("service")

        def create(worker: int, i: int) -> None:
            body = {
                "kind": "paper" if self.flow == "upload" else "esign",
                "title": f"Bench {tag} {i}",
                "external_id": f"bench-{tag}-{i}",
                "parties": [{"name": "Ada Borrower", "email": "ada@example.com"}],
                "secured_party": {"name": "First Bank", "id": "bank-1"},
            }
            response = clients[worker].post(f"{API}/envelopes", json=body, headers=self.headers)
            if response.status_code != 201:
                raise RuntimeError(f"create envelope: {response.status_code} {response.text[:300]}")
            ids[i] = response.json()["id"]

        run_concurrently(count, self.concurrency, create)
        return ids

    def service(self, envelope_ids: list[str], digests: list[str], server: str = "service") -> Round:
        paths = [f"{API}/envelopes/{envelope_id}/vault-in-{self.flow}" for envelope_id in envelope_ids]
        return self._uploads(server, paths, digests, self.headers)

    def floor(self, name: str, tag: str, count: int, digests: list[str]) -> Round:
        """The same uploads to a ``bench/stack_floor.py`` server, each under a key of its own (no API key)."""
        return self._uploads(name, [f"/vault-in-{self.flow}/{tag}-{i}" for i in range(count)], digests, {})

    def _uploads(self, server: str, paths: list[str], digests: list[str], auth: dict[str, str]) -> Round:
        """Upload ``pdfs[i % len]`` to ``paths[i]`` of ``server`` with its digest, on fresh connections; each
        must be answered 201."""
        clients = self._fresh_clients(server)

        def upload(worker: int, i: int) -> None:
            j = i % len(self.pdfs)
            headers = {**auth, "Content-Type": "application/pdf", "X-Content-SHA256": digests[j]}
            response = clients[worker].post(paths[i], content=self.pdfs[j], headers=headers)
            if response.status_code != 201:
                raise RuntimeError(f"{server} {paths[i]}: {response.status_code} {response.text[:300]}")

        return run_concurrently(len(paths), self.concurrency, upload)


# --- main -------------------------------------------------------------------------------------------------------


def render(phases: list[PhaseResult], ratio: float, info: dict[str, Any]) -> str:
    lines = [
        f"vault-in bench: {info['count']} x {info['size'] // 1024} KiB PDFs, {info['concurrency']} clients, "
        f"{info['rounds']} interleaved rounds (median), server in {info['server']}, vault-in-{info['flow']}, "
        f"{info['database']}, server peak RSS {info['server_peak_rss_mib']} MiB",
        "",
        f"| {'phase':<10} | {'obj/s':>7} | {'MiB/s':>7} | {'p50 ms':>7} | {'p99 ms':>7} | rounds obj/s |",
        f"|{'-' * 12}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 14}|",
    ]
    for p in phases:
        rounds = ", ".join(f"{v:.1f}" for v in p.rounds_objects_per_s)
        lines.append(
            f"| {p.name:<10} | {p.objects_per_s:7.1f} | {p.mb_per_s:7.1f} | {p.p50_ms:7.1f} | {p.p99_ms:7.1f} | "
            f"{rounds:<12} |"
        )
    lines += ["", f"service / raw-lock = {ratio:.2f}  (issue 25's aim: >= {RATIO_AIMS[info['flow']]:.2f})"]
    before = next((p for p in phases if p.name == "before"), None)
    if before is not None:
        raw = next(p for p in phases if p.name == "raw-lock")
        lines.append(f"before / raw-lock = {before.objects_per_s / raw.objects_per_s:.2f}  (--before, same rounds)")
    service_cpu = next(p for p in phases if p.name == "service").cpu_ms_per_object.get("api", 0.0)
    for floor in (p for p in phases if p.name in FLOORS):
        floor_cpu = floor.cpu_ms_per_object.get("api", 0.0)
        lines.append(
            f"{floor.name}: its server's CPU {floor_cpu:.1f} ms per object, the service's {service_cpu:.1f}: "
            f"service / {floor.name} = {service_cpu / floor_cpu:.2f}  (bench/stack_floor.py, same rounds)"
        )
    lines.append("")
    cores = os.cpu_count() or 1
    lines += [
        f"CPU ms per object (bench = clients + the store's relay, and the API itself with --server thread; api = "
        f"the phase's own server; the idle servers' CPU is left out); bound = {cores} cores / total",
        "",
        "| phase      |   bench |     api |    weed |   other |   total | bound obj/s |",
        f"|{'-' * 12}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 13}|",
    ]
    for p in phases:
        c = p.cpu_ms_per_object
        total = sum(v for group, v in c.items() if group != "idle")
        bound = cores * 1000 / total if total else float("inf")
        lines.append(
            f"| {p.name:<10} | {c.get('bench', 0):7.1f} | {c.get('api', 0):7.1f} | {c.get('weed', 0):7.1f} | "
            f"{c.get('other', 0):7.1f} | {total:7.1f} | {bound:11.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=200, help="PDFs per phase and round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", type=int, default=MIB, help="bytes per PDF")
    parser.add_argument("--warmup", type=int, default=16, help="objects per phase before timing")
    parser.add_argument("--port-base", type=int, default=DEFAULT_PORT_BASE, help="first embedded SeaweedFS port")
    parser.add_argument("--server", choices=["thread", "process"], default="thread")
    parser.add_argument(
        "--stages", action="store_true", help="also time each step of the service (thread or single process)"
    )
    parser.add_argument("--before", type=Path, help="another checkout served beside this one (process server)")
    parser.add_argument("--workers", type=int, default=0, help="serve with `evault serve --workers N` (process)")
    for who in ("", "before-"):
        loops = ["auto", "asyncio", "uvloop"]
        parser.add_argument(f"--{who}loop", choices=loops, default="auto", help=f"{who or 'service '}event loop")
        parser.add_argument(f"--{who}http", choices=["auto", "h11"], default="auto", help="h11: the pure-Python parser")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--flow", choices=["upload", "signed"], default="upload", help="paper PDFs or signed PDFs")
    parser.add_argument("--database-url", default="", help="e.g. postgresql+psycopg://... (default: SQLite)")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also time bench/stack_floor.py, the least vault-in the bound packages allow, with and without PDF work",
    )
    parser.add_argument("--serve-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_child:
        return serve_child()
    if (args.before or args.workers or args.floor) and args.server != "process":
        parser.error("--before, --workers and --floor need --server process (the API's CPU is its process's)")
    if args.stages and args.workers:
        parser.error("--stages times one API process: leave --workers out")
    stages = Stages()

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    make_pdf = load_make_pdf()
    for noisy in ("httpx", "httpcore"):  # the vault's logging setup would print every request
        logging.getLogger(noisy).setLevel(logging.WARNING)
    t0 = time.perf_counter()
    pdfs = [make_pdf(size_bytes=args.size, text=f"doc {i}") for i in range(args.count)]
    if args.flow == "signed":  # a PAdES signature by the tests' PKI over each padded PDF (about +10 KiB)
        signed_pdfs = importlib.import_module("tests.signed_pdfs")
        pdfs = [signed_pdfs._sign(pdf, "Signature1") for pdf in pdfs]
    digests = [hashlib.sha256(p).hexdigest() for p in pdfs]
    assert len(set(digests)) == len(pdfs)
    say(f"generated {len(pdfs)} PDFs in {time.perf_counter() - t0:.1f} s")

    with tempfile.TemporaryDirectory(prefix="evault-bench-") as tmp:
        settings = Settings.from_env(
            {
                "EVAULT_DATA_DIR": str(Path(tmp) / "data"),
                "EVAULT_S3_EMBEDDED_PORT_BASE": str(args.port_base),
                "EVAULT_RETENTION_DAYS": "1",
                "EVAULT_MAX_UPLOAD_BYTES": str(max(2 * args.size, 4 * MIB)),
                "EVAULT_RATE_LIMIT": BENCH_RATE_LIMIT,  # the benchmark measures throughput, not the limiter
                # Twice the clients: a slot is given back just after its answer, so on PostgreSQL (every process's
                # caps in the database) a client's next upload can find its last one still counted: 429.
                "EVAULT_MAX_UPLOADS_PER_KEY": str(max(4, 2 * args.concurrency)),
                "EVAULT_MAX_UPLOADS_PER_ORG": str(max(12, 2 * args.concurrency)),
                "EVAULT_MAX_UPLOADS": str(max(16, 2 * args.concurrency)),
                **({"EVAULT_DATABASE_URL": args.database_url} if args.database_url else {}),
            }
        )
        t0 = time.perf_counter()
        runtime = open_runtime(settings)
        ports = f"{args.port_base}..{args.port_base + 7}"
        say(f"vault open (embedded SeaweedFS on ports {ports}) in {time.perf_counter() - t0:.1f} s")
        try:
            with runtime.db.session() as session:
                first = bootstrap(session)
            assert first is not None
            _, api_key = first
            with ExitStack() as servers:
                if args.server == "thread":
                    if args.stages:
                        stages.install(runtime)
                    runtime.start_checkpointer()
                    urls = {"service": servers.enter_context(serve_in_thread(runtime, free_port()))}
                    procs: dict[str, ApiProcess] = {}
                else:
                    targets = {"service": ROOT, **({"before": args.before.resolve()} if args.before else {})}
                    procs = {
                        name: servers.enter_context(
                            serve_in_process(
                                runtime,
                                free_port(),
                                root=root,
                                workers=args.workers,
                                stages_file=Path(tmp) / f"stages-{name}.json" if args.stages else None,
                                loop=args.before_loop if name == "before" else args.loop,
                                http=args.before_http if name == "before" else args.http,
                                phase=name,
                            )
                        )
                        for name, root in targets.items()
                    }
                    urls = {name: proc.base_url for name, proc in procs.items()}
                stamp = time.strftime("%H%M%S")
                floors = {
                    name: servers.enter_context(
                        serve_floor(runtime, free_port(), f"bench-{name}-{stamp}", pdf=pdf, phase=name)
                    )
                    for name, pdf in (FLOORS.items() if args.floor else ())
                }
                bench = Bench(runtime, urls, api_key, pdfs, args.concurrency, args.flow, floors)
                try:
                    results = run_phases(bench, args, digests, say, stages, procs)
                finally:
                    bench.close()
                stage_rows = {name: proc.stage_rows() for name, proc in procs.items()}
                if args.server == "thread" and args.stages:
                    stage_rows = {"service": (stages.rows(), 0.0)}
        finally:
            t0 = time.perf_counter()
            runtime.close()
            say(f"vault closed in {time.perf_counter() - t0:.1f} s")

    phases = [summarise(name, rounds, args.size) for name, rounds in results.items()]
    by_name = {p.name: p for p in phases}
    ratio = by_name["service"].objects_per_s / by_name["raw-lock"].objects_per_s
    info = {
        "count": args.count,
        "size": args.size,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "server": args.server + (f", evault serve --workers {args.workers}" if args.workers else ""),
        "flow": args.flow,
        "database": "postgresql" if args.database_url.startswith("postgresql") else "sqlite",
        "server_peak_rss_mib": round(SERVER_PEAK_RSS["service"] / MIB) if "service" in SERVER_PEAK_RSS else None,
    }
    requests = args.count * args.rounds
    reports = {
        name: Stages.report(rows, requests) + [loop_row(loop_cpu, requests)] * bool(loop_cpu)
        for name, (rows, loop_cpu) in stage_rows.items()
        if rows
    }
    if args.json:
        out = {**info, "phases": [p.as_json() for p in phases], "ratio": round(ratio, 3)}
        if "before" in by_name:
            out["before_ratio"] = round(by_name["before"].objects_per_s / by_name["raw-lock"].objects_per_s, 3)
        if reports:
            out["stages"] = reports
        print(json.dumps(out, indent=2))
    else:
        print(render(phases, ratio, info))
        if reports:
            print(render_stages(reports))
    return 0


LOOP_STAGE = "event loop thread (HTTP, routing, middleware, body, answer)"


def loop_row(loop_cpu: float, requests: int) -> dict[str, Any]:
    return {
        "stage": LOOP_STAGE,
        "calls_per_request": None,
        "wall_ms_per_request": None,
        "cpu_ms_per_request": round(loop_cpu / requests * 1000, 2),
    }


def render_stages(reports: dict[str, list[dict[str, Any]]]) -> str:
    """One row per stage; for each server (service, and before with --before) calls, wall ms and CPU ms per
    request (CPU only for steps in a worker thread, and for the event loop's thread as a whole)."""
    names = list(reports)
    order: list[str] = []
    for rows in reports.values():
        order += [row["stage"] for row in rows if row["stage"] not in order]
    by = {name: {row["stage"]: row for row in rows} for name, rows in reports.items()}

    def cell(value: Any) -> str:
        return "" if value is None else f"{value:g}"

    head = "| stage (per timed vault-in request) | " + " | ".join(
        f"{n} calls | {n} wall ms | {n} CPU ms" for n in names
    )
    lines = ["", head + " |", "|---|" + "---:|" * (3 * len(names))]
    for stage in order:
        cells = []
        for name in names:
            row = by[name].get(stage, {})
            cells += [cell(row.get(k)) for k in ("calls_per_request", "wall_ms_per_request", "cpu_ms_per_request")]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_phases(
    bench: Bench,
    args: argparse.Namespace,
    digests: list[str],
    say: Callable[[str], None],
    stages: Stages,
    procs: dict[str, ApiProcess],
) -> dict[str, list[Round]]:
    warm = min(args.warmup, args.count)
    services = [name for name in bench.servers if name not in bench.floors]  # "service", "before" with --before
    if warm:
        t0 = time.perf_counter()
        bench.raw_lock("warmup", warm)
        bench.raw_plain("warmup", warm)
        for server in services:
            bench.service(bench.create_envelopes(f"warmup-{server}", warm), digests, server)
        for name in bench.floors:
            bench.floor(name, "warmup", warm, digests)
        say(f"warm-up ({warm} objects per phase) in {time.perf_counter() - t0:.1f} s")
    servers = [*services, *bench.floors]
    results: dict[str, list[Round]] = {"raw-lock": [], "raw-plain": [], **{name: [] for name in servers}}
    for r in range(args.rounds):
        tag = f"r{r}"
        envelopes = {name: bench.create_envelopes(f"{tag}-{name}", args.count) for name in services}  # untimed
        order = list(results) if r % 2 == 0 else ["raw-lock", "raw-plain", *reversed(servers)]
        for name in order:
            if name == "raw-lock":
                done = timed_cpu(partial(bench.raw_lock, tag, args.count))
            elif name == "raw-plain":
                done = timed_cpu(partial(bench.raw_plain, tag, args.count))
            elif name in bench.floors:
                done = timed_cpu(partial(bench.floor, name, tag, args.count, digests), name)
            else:
                stages.enabled = True
                if name in procs:
                    procs[name].stages(True)
                done = timed_cpu(partial(bench.service, envelopes[name], digests, name), name)
                if name in procs:
                    procs[name].stages(False)
                stages.enabled = False
            results[name].append(done)
            say(f"round {r + 1} {name:<9}: {args.count / done.seconds:6.1f} obj/s ({done.seconds:.1f} s)")
    return results


if __name__ == "__main__":
    sys.exit(main())
