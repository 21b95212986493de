"""Tenant isolation benchmark: does one tenant's load slow another tenant down?

One run starts the real stack (embedded SeaweedFS, SQLite, uvicorn in a thread, served as ``evault serve``
serves it), vaults a ``--pages``-page PDF for tenant A and a small one for tenant B, then measures B's
``GET /envelopes/{id}`` latency twice: alone, and under tenant A's ``--attack``:

- ``copies``: A keeps ``--copiers`` copy requests in flight. Stamping runs in child processes within the
  in-process slots, so A's extra requests are refused with 503 ``Copy.Busy`` instead of queueing.
- ``slow-uploads``: A opens ``--slow`` uploads from four keys, each sending one byte every 2 s (and opening
  another when answered). A holds at most its share of the upload slots and each trickle ends in 408
  ``Request.BodyTimeout``; B also uploads ``--uploads`` documents in each phase, and their answers are counted.

The report gives B's p99 under the attack over its p99 alone (the aim: within 3x), and A's answers.

    python bench/copy_latency.py [--attack copies|slow-uploads] [--pages N] [--requests N] [--copiers C] [--json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from storage.settings import Settings
from vault.runtime import Runtime, open_runtime
from vault.tenancy import SCOPES, create_api_key, create_organisation

ROOT = Path(__file__).resolve().parents[1]
API = "/api/v2/partner"


def tenant(runtime: Runtime, client: httpx.Client, pdf: bytes, keys: int = 1) -> tuple[list[dict[str, str]], str]:
    """A new organisation with ``keys`` API keys and one vaulted envelope: (each key's headers, envelope id)."""
    with runtime.db.session() as session:
        org = create_organisation(session, f"Bench {uuid.uuid4().hex[:6]}")
        raws = [create_api_key(session, org.id, f"bench {n}", list(SCOPES))[1] for n in range(keys)]
    every = [{"X-API-Key": raw} for raw in raws]
    envelope_id = new_envelope(client, every[0])
    response = client.post(
        f"{API}/envelopes/{envelope_id}/vault-in-upload",
        content=pdf,
        headers={**every[0], "Content-Type": "application/pdf"},
    )
    response.raise_for_status()
    return every, envelope_id


def new_envelope(client: httpx.Client, headers: dict[str, str]) -> str:
    body = {"kind": "paper", "title": "Bench", "secured_party": {"name": "First Bank"}}
    envelope_id: str = client.post(f"{API}/envelopes", json=body, headers=headers).json()["id"]
    return envelope_id


def uploads(client: httpx.Client, headers: dict[str, str], pdf: bytes, count: int) -> tuple[list[float], Counter[int]]:
    """``count`` vault-ins of ``pdf`` into fresh envelopes: their latencies and their answers."""
    times: list[float] = []
    answers: Counter[int] = Counter()
    for _ in range(count):
        envelope_id = new_envelope(client, headers)
        started = time.perf_counter()
        response = client.post(
            f"{API}/envelopes/{envelope_id}/vault-in-upload",
            content=pdf,
            headers={**headers, "Content-Type": "application/pdf"},
        )
        times.append(time.perf_counter() - started)
        answers[response.status_code] += 1
    return times, answers


Attack = Callable[[threading.Event, Counter[Any]], None]  # one attacker's loop, until the event is set


def copy_attack(base: str, headers: dict[str, str], envelope_id: str, seconds: list[float]) -> Attack:
    """Ask for a copy of A's large document again and again (after Retry-After when refused); each copy's
    time goes to ``seconds``."""

    def attack(stop: threading.Event, outcomes: Counter[Any]) -> None:
        with httpx.Client(base_url=base, timeout=300) as own:
            while not stop.is_set():
                started = time.perf_counter()
                response = own.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers)
                outcomes[response.status_code] += 1
                if response.status_code == 200:
                    seconds.append(time.perf_counter() - started)
                else:
                    time.sleep(float(response.headers.get("Retry-After", "1")))

    return attack


def slow_upload_attack(base: str, headers: dict[str, str], envelope_id: str) -> Attack:
    """Upload to A's envelope one byte every 2 s, announcing 100 kB; when answered, start again."""
    host, port = urlsplit(base).hostname or "127.0.0.1", urlsplit(base).port or 80
    head = (
        f"POST {API}/envelopes/{envelope_id}/vault-in-upload HTTP/1.1\r\nHost: {host}\r\n"
        f"X-API-Key: {headers['X-API-Key']}\r\nContent-Type: application/pdf\r\nContent-Length: 100000\r\n\r\n%"
    ).encode()

    def attack(stop: threading.Event, outcomes: Counter[Any]) -> None:
        while not stop.is_set():
            with socket.create_connection((host, port), timeout=2) as sock:
                sock.sendall(head)
                answer = b""
                while not stop.is_set() and not answer:
                    try:
                        answer = sock.recv(4096)
                        break
                    except TimeoutError:
                        pass
                    except OSError:
                        break
                    try:
                        sock.sendall(b"x")
                    except OSError:
                        break
                if answer:
                    status, code = _answer(sock, answer)
                    outcomes[f"{status} {code}"] += 1
                    if status != 408:
                        time.sleep(1)  # Retry-After

    return attack


def _answer(sock: socket.socket, data: bytes) -> tuple[int, str]:
    """The status and error code of a response whose first bytes are ``data``."""
    while b"\r\n\r\n" not in data and (more := sock.recv(4096)):
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line[15:]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")), 0)
    while len(body) < length and (more := sock.recv(4096)):
        body += more
    return int(head.split(b" ", 2)[1]), json.loads(body or b"{}").get("code", "")


def latencies(client: httpx.Client, url: str, headers: dict[str, str], count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        client.get(url, headers=headers).raise_for_status()
        times.append(time.perf_counter() - started)
    return times


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--attack", choices=["copies", "slow-uploads"], default="copies", help="tenant A's load")
    parser.add_argument("--pages", type=int, default=2000, help="pages of tenant A's document")
    parser.add_argument("--requests", type=int, default=300, help="tenant B's GETs per phase")
    parser.add_argument("--copiers", type=int, default=4, help="copies: tenant A's concurrent copy requests")
    parser.add_argument("--slow", type=int, default=16, help="slow-uploads: tenant A's trickling uploads")
    parser.add_argument("--uploads", type=int, default=10, help="slow-uploads: tenant B's uploads per phase")
    # below Linux's ephemeral range (32768+), where ports collide
    parser.add_argument("--port", type=int, default=26390)
    parser.add_argument("--port-base", type=int, default=26400, help="first embedded SeaweedFS port")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    make_pdf = importlib.import_module("tests.pdf_factory").make_pdf
    vault_in_bench = importlib.import_module("bench.vault_in")
    serve = vault_in_bench.serve_in_thread  # uvicorn in a thread, as vault-in's bench
    slow = args.attack == "slow-uploads"

    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "EVAULT_DATA_DIR": tmp,
            "EVAULT_S3_EMBEDDED_PORT_BASE": str(args.port_base),
            "EVAULT_MAX_UPLOAD_BYTES": str(200 * 1024 * 1024),
            # the bench measures isolation, not the per-key rate limits (their own tests do)
            "EVAULT_RATE_LIMIT": vault_in_bench.BENCH_RATE_LIMIT,
            "EVAULT_RATE_LIMIT_COPIES": vault_in_bench.BENCH_RATE_LIMIT,
        }
        runtime = open_runtime(Settings.from_env(env))
        b_pdf = make_pdf(pages=2)
        try:
            with serve(runtime, args.port) as base, httpx.Client(base_url=base, timeout=300) as client:
                a_keys, a_envelope = tenant(runtime, client, make_pdf(pages=2 if slow else args.pages), 4)
                b_keys, b_envelope = tenant(runtime, client, b_pdf)
                b_url = f"{API}/envelopes/{b_envelope}"
                latencies(client, b_url, b_keys[0], 20)  # warm-up
                alone = latencies(client, b_url, b_keys[0], args.requests)
                b_alone = uploads(client, b_keys[0], b_pdf, args.uploads) if slow else None

                stop = threading.Event()
                outcomes: Counter[Any] = Counter()
                copy_seconds: list[float] = []
                if slow:
                    attackers = [slow_upload_attack(base, a_keys[n % 4], a_envelope) for n in range(args.slow)]
                else:
                    attackers = [copy_attack(base, a_keys[0], a_envelope, copy_seconds)] * args.copiers
                threads = [threading.Thread(target=attack, args=(stop, outcomes)) for attack in attackers]
                for thread in threads:
                    thread.start()
                time.sleep(1.0)  # let the attackers get going
                loaded = latencies(client, b_url, b_keys[0], args.requests)
                b_loaded = uploads(client, b_keys[0], b_pdf, args.uploads) if slow else None
                stop.set()
                for thread in threads:
                    thread.join()
        finally:
            runtime.close()

    report: dict[str, Any] = {
        "attack": args.attack,
        "pages": 2 if slow else args.pages,
        "attackers": len(attackers),
        "alone": summary(alone),
        "attacked": summary(loaded),
        "attacker_answers": dict(outcomes),
    }
    if not slow:
        report["copy_p50_s"] = round(statistics.median(copy_seconds), 2) if copy_seconds else None
    report["p50_ratio"] = round(report["attacked"]["p50_ms"] / report["alone"]["p50_ms"], 2)
    report["p99_ratio"] = round(report["attacked"]["p99_ms"] / report["alone"]["p99_ms"], 2)
    if b_alone is not None and b_loaded is not None:
        report["b_uploads_alone"] = {**summary(b_alone[0]), "answers": dict(b_alone[1])}
        report["b_uploads_attacked"] = {**summary(b_loaded[0]), "answers": dict(b_loaded[1])}
        report["upload_p99_ratio"] = round(
            report["b_uploads_attacked"]["p99_ms"] / report["b_uploads_alone"]["p99_ms"], 2
        )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        what = (
            f"{args.copiers} concurrent copy requests of a {args.pages}-page PDF"
            if not slow
            else f"{args.slow} uploads trickling a byte every 2 s"
        )
        print(
            f"tenant B GET latency, alone: p50 {report['alone']['p50_ms']} ms, p99 {report['alone']['p99_ms']} ms\n"
            f"under tenant A's {what}: p50 {report['attacked']['p50_ms']} ms, p99 {report['attacked']['p99_ms']} ms "
            f"(x{report['p50_ratio']} / x{report['p99_ratio']})\n"
            f"tenant A's answers: {dict(outcomes)}" + (f", copy p50 {report['copy_p50_s']} s" if not slow else "")
        )
        if "upload_p99_ratio" in report:
            print(
                f"tenant B uploads alone: {report['b_uploads_alone']}, attacked: {report['b_uploads_attacked']} "
                f"(p99 x{report['upload_p99_ratio']})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
