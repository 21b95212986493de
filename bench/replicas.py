"""Replicas under load: N ``evault serve`` processes over one PostgreSQL and one S3 store, started together,
each with a data directory of its own and the vault's secrets given as settings, as on separate hosts, with
clients spreading mixed traffic over them (create, vault-in, copies, vault-out). Mid-load one replica is killed
with SIGKILL and restarted, and PostgreSQL is restarted once.

Afterwards it checks:
- no envelope was vaulted or released twice;
- every acknowledged vault-in and vault-out is in the log;
- ``evault verify`` (every organisation's log as one consistent history, every object) is clean.

It reports each replica's share of the answers, and every answer that was not a success. Those must be 503 with
``Retry-After``, 429 ``Request.TooManyUploads`` (the key's upload cap holds across replicas, and a killed
replica's slots come back only when their leases lapse), a refused connection while a replica or the database
was down, or a 409 replay of a retried request. Headline: answers per replica and error answers by kind over
the run's wall time. It is not a throughput figure: the client's retries and the faults' pauses are inside it.

    .venv/bin/python bench/replicas.py [--seconds 180] [--replicas 3] [--clients 6] [--json]

It starts its own PostgreSQL cluster (Debian's server binaries, as ``scripts/test.sh`` installs them) and its
own SeaweedFS, on ports from ``EVAULT_BENCH_PORT_BASE`` (default 26400: the store takes 8, the replicas the
next ``--replicas``, PostgreSQL one more). ``tests/test_replicas.py`` runs a short version in CI.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compliance.ledger.signer import create_key_file  # noqa: E402
from compliance.signatures.document_identity import CERT_FILE, KEY_FILE, load_or_create_document_signer  # noqa: E402
from storage.embedded_s3 import EmbeddedS3  # noqa: E402
from tests.helpers import bootstrap_key, store_env  # noqa: E402
from tests.pdf_factory import make_pdf  # noqa: E402
from tests.pg_cluster import PrivateCluster  # noqa: E402

API = "/api/v2/partner"
SUCCESS = {200, 201}


@dataclass
class Fleet:
    """The replicas: one ``evault serve`` each, sharing the environment (database, store, and the vault's secrets
    given as settings, as on separate hosts) but not a port or a data directory."""

    env: dict[str, str]
    ports: list[int]
    logs: Path
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    def start_all(self) -> None:
        """All at once, as a deployment starts them: on the empty database they migrate and bootstrap in turn."""
        for i in range(len(self.ports)):
            self._spawn(i)
        for i in range(len(self.ports)):
            self._wait_ready(i)

    def start(self, i: int) -> None:
        self._spawn(i)
        self._wait_ready(i)

    def _spawn(self, i: int) -> None:
        log = (self.logs / f"replica-{i}.log").open("ab")
        env = {
            **os.environ,
            **self.env,
            "EVAULT_DATA_DIR": str(self.logs / f"replica-{i}"),
            "EVAULT_HOST": "127.0.0.1",
            "EVAULT_PORT": str(self.ports[i]),
        }
        self.procs[i] = subprocess.Popen(
            [sys.executable, "-m", "vault.cli.main", "serve"], env=env, cwd=ROOT, stdout=log, stderr=log
        )

    def _wait_ready(self, i: int) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.procs[i].poll() is not None:
                raise RuntimeError(f"replica {i} exited: {(self.logs / f'replica-{i}.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url(i)}/ready", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"replica {i} did not become ready")

    def kill(self, i: int) -> None:
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(30)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def key(self) -> str:
        """The one bootstrap key, from whichever replica made the first organisation (its log names the file
        in its data directory that holds it)."""
        found = [
            key
            for i in range(len(self.ports))
            for line in (self.logs / f"replica-{i}.log").read_text().splitlines()
            if (key := bootstrap_key(line))
        ]
        if len(found) != 1:
            raise RuntimeError(f"{len(found)} replicas made a first organisation, not one")
        return found[0]


@dataclass
class Traffic:
    """Clients that each run envelopes through their life on whichever replica they pick, and remember what the
    service acknowledged. A request that meets a dead replica or a 503 is sent again, with the same
    Idempotency-Key, to another replica after Retry-After."""

    fleet: Fleet
    headers: dict[str, str]
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    served: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)  # answers no client should ever get
    vaulted: set[str] = field(default_factory=set)
    released: set[str] = field(default_factory=set)
    created: int = 0

    def _send(self, rng: random.Random, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        headers = {**self.headers, "Idempotency-Key": uuid.uuid4().hex, **kwargs.pop("headers", {})}
        for _ in range(60):
            i = rng.randrange(len(self.fleet.ports))
            try:
                response = httpx.request(method, self.fleet.url(i) + API + path, headers=headers, timeout=60, **kwargs)
            except httpx.HTTPError as exc:
                with self.lock:
                    self.errors[f"connection: {type(exc).__name__}"] += 1
                time.sleep(0.5)
                continue
            with self.lock:
                self.served[i] += 1
            if response.status_code in SUCCESS:
                return response
            json_answer = response.headers.get("content-type", "").startswith("application/json")
            code = response.json().get("code") if json_answer else None
            with self.lock:
                self.errors[f"{response.status_code} {code}"] += 1
            waited = response.headers.get("retry-after", "")
            in_flight = code in ("Idempotency.InProgress", "Vault.InProgress")
            if waited.isdigit() and (response.status_code == 503 or in_flight or code == "Request.TooManyUploads"):
                time.sleep(min(int(waited), 5))
                continue
            with self.lock:
                self.bad.append(f"{method} {path}: {response.status_code} {response.text[:300]}")
            return None
        with self.lock:
            self.bad.append(f"{method} {path}: never answered")
        return None

    def _one(self, rng: random.Random, n: int) -> None:
        body = {"kind": "paper", "title": f"Loan {n}", "secured_party": {"name": "First Bank"}}
        created = self._send(rng, "POST", "/envelopes", json=body)
        if created is None:
            return
        envelope_id = created.json()["id"]
        with self.lock:
            self.created += 1
        pdf = make_pdf(text=f"loan {n} {uuid.uuid4().hex}")
        vaulted = self._send(
            rng,
            "POST",
            f"/envelopes/{envelope_id}/vault-in-upload",
            content=pdf,
            headers={"Content-Type": "application/pdf"},
        )
        if vaulted is None:
            return
        with self.lock:
            self.vaulted.add(envelope_id)
        if rng.random() < 0.3:
            self._send(rng, "GET", f"/envelopes/{envelope_id}/vault/copy/signed-url")
        if rng.random() < 0.5:
            out = self._send(rng, "POST", f"/envelopes/{envelope_id}/vault-out", json={"reason": "payoff"})
            if out is not None:
                with self.lock:
                    self.released.add(envelope_id)

    def run(self, clients: int) -> list[threading.Thread]:
        def loop(worker: int) -> None:
            rng, n = random.Random(worker), 0
            while not self.stop.is_set():
                n += 1
                self._one(rng, worker * 100_000 + n)

        threads = [threading.Thread(target=loop, args=(w,), daemon=True) for w in range(clients)]
        for thread in threads:
            thread.start()
        return threads


def _events(database_url: str) -> dict[str, Counter[str]]:
    """Per event type, how many times each envelope has it in the log."""
    engine = create_engine(database_url)
    counts: dict[str, Counter[str]] = {"vault.vaulted_in": Counter(), "vault.released": Counter()}
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT event_type, envelope_id FROM event WHERE event_type IN ('vault.vaulted_in', 'vault.released')")
        )
        for event_type, envelope_id in rows:
            counts[event_type][envelope_id] += 1
    engine.dispose()
    return counts


def run(
    env: dict[str, str],
    ports: list[int],
    logs: Path,
    seconds: float,
    clients: int,
    restart_database: Callable[[], None],
) -> dict[str, Any]:
    """The whole exercise; returns the report, with ``ok`` false and ``problems`` listed if an invariant broke."""
    fleet = Fleet(env, ports, logs)
    started = time.monotonic()
    try:
        fleet.start_all()
        traffic = Traffic(fleet, {"X-API-Key": fleet.key()})
        threads = traffic.run(clients)
        time.sleep(seconds / 3)
        fleet.kill(1)  # mid-load, without warning
        time.sleep(2)
        fleet.start(1)
        time.sleep(seconds / 3)
        restart_database()
        time.sleep(seconds / 3)
        traffic.stop.set()
        for thread in threads:
            thread.join(180)
    finally:
        fleet.stop()
    wall = time.monotonic() - started
    events = _events(env["EVAULT_DATABASE_URL"])
    verify = subprocess.run(
        [sys.executable, "-m", "vault.cli.main", "verify"],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    problems = list(traffic.bad)
    problems += [f"{e} vaulted {n} times" for e, n in events["vault.vaulted_in"].items() if n > 1]
    problems += [f"{e} released {n} times" for e, n in events["vault.released"].items() if n > 1]
    unlogged = (traffic.vaulted - set(events["vault.vaulted_in"]), traffic.released - set(events["vault.released"]))
    problems += [f"acknowledged vault-in of {e} is not in the log" for e in unlogged[0]]
    problems += [f"acknowledged vault-out of {e} is not in the log" for e in unlogged[1]]
    if verify.returncode != 0:
        # stdout is the run's line and one line per finding; stderr is the log (its end only)
        problems.append(f"evault verify exited {verify.returncode}:\n{verify.stdout}\n{verify.stderr[-2000:]}")
    return {
        "ok": not problems,
        "problems": problems,
        "wall_seconds": round(wall, 1),
        "replicas": len(ports),
        "clients": clients,
        "answers_per_replica": {str(i): traffic.served[i] for i in range(len(ports))},
        "error_answers": dict(traffic.errors),
        "envelopes_created": traffic.created,
        "vaulted": len(traffic.vaulted),
        "released": len(traffic.released),
    }


def _shared_secrets(directory: Path) -> dict[str, str]:
    """What every replica must hold alike, made once and given to each as settings, as a deployment's secrets
    are (docs/scale-out.md#what-every-process-must-hold-alike): a replica that made its own would be refused."""
    directory.mkdir(mode=0o700, parents=True)
    create_key_file(directory / "vault-signing-key.pem")
    load_or_create_document_signer(directory, None, None, "replicas bench document signing")
    return {
        "EVAULT_SIGNING_KEY": str(directory / "vault-signing-key.pem"),
        "EVAULT_DOCUMENT_SIGNING_KEY": str(directory / KEY_FILE),
        "EVAULT_DOCUMENT_SIGNING_CERT": str(directory / CERT_FILE),
        "EVAULT_SIGNING_LINK_SECRET": base64.b64encode(secrets.token_bytes(32)).decode(),
        "EVAULT_WEBHOOK_SECRETS_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
    }


@contextmanager
def _stack(base: int, replicas: int, workdir: Path) -> Iterator[tuple[dict[str, str], list[int], PrivateCluster]]:
    store = EmbeddedS3(workdir / "store", base, buckets=(), unprotected=False)
    store.start()
    cluster = PrivateCluster(base + 8 + replicas)
    try:
        cluster.init()
        cluster.start()
        env = {
            "EVAULT_DATA_DIR": str(workdir / "vault"),  # the verifier's; each replica has its own (Fleet)
            **_shared_secrets(workdir / "keys"),
            "EVAULT_DATABASE_URL": cluster.url,
            "EVAULT_DATABASE_TIMEOUT": "2",
            "EVAULT_CLAIM_LEASE_SECONDS": "2",
            **store_env(store, uuid.uuid4().hex[:10]),
            "EVAULT_RETENTION_DAYS": "1",
            "EVAULT_RATE_LIMIT": "1000000/60",
            "EVAULT_RATE_LIMIT_COPIES": "1000000/60",
        }
        yield env, [base + 8 + i for i in range(replicas)], cluster
    finally:
        cluster.stop()
        store.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base = int(os.environ.get("EVAULT_BENCH_PORT_BASE", "26400"))
    with tempfile.TemporaryDirectory(prefix="evault-replicas-") as tmp:
        with _stack(base, args.replicas, Path(tmp)) as (env, ports, cluster):

            def restart_database() -> None:
                cluster.stop()
                time.sleep(2)
                cluster.start()

            report = run(env, ports, Path(tmp), args.seconds, args.clients, restart_database)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['replicas']} replicas, {report['clients']} clients, {report['wall_seconds']} s wall")
        print(f"answers per replica: {report['answers_per_replica']}")
        print(f"error answers: {report['error_answers']}")
        print(f"created {report['envelopes_created']}, vaulted {report['vaulted']}, released {report['released']}")
        print("invariants: " + ("all hold" if report["ok"] else "BROKEN\n  " + "\n  ".join(report["problems"])))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
