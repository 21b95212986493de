"""Isolation benchmark: does one tenant's copying, or its compliance checks, slow another tenant down?

One run starts the real stack (embedded SeaweedFS, SQLite, uvicorn in a thread, or with ``--server process`` in
a process of its own as deployed, away from the clients' GIL), vaults a ``--pages``-page PDF
for tenant A and a small one for tenant B, then measures B's ``GET /envelopes/{id}`` latency twice: alone, and
while A attacks with ``--copiers`` concurrent clients:

- ``--attack copies`` (default): A keeps copy requests in flight. Stamping runs in child processes within the
  in-process slots, so A's extra requests are refused with 503 ``Copy.Busy`` instead of queueing.
- ``--attack compliance-many-copies``: A first has ``--copies`` copies issued of its document, then its
  clients call ``GET /compliance`` on that envelope back to back. The checks run in the evidence pool
  (per-organisation cap, deadline), so A's extra calls are refused with 503 ``Evidence.Busy``.
- ``--attack rehearsal-bomb``: A's clients (in a process of their own, so their work does not share the API's
  GIL) upload files of a few KB whose streams are small once but huge as used (a /Contents array naming one
  8 MB stream 1,000 times, an XObject drawn 10,000 times, forms nested 4^20, 100 pages each making its own
  form of a 4 MB stream; ``tests/hostile_pdfs.py``). Each once took the API to gigabytes; now the vetting
  refuses each before anything is joined. The report adds the process's peak RSS growth.
- ``--attack upload-flood``: the baseline for the bombs, the same clients uploading an ordinary PDF of about
  their mean size (25 pages, ~10 KB), vetted in full and then refused for its wrong declared SHA-256 (so
  nothing is stored). A tenant flooding uploads costs others CPU whatever the files hold; the bombs should
  cost no more than this.

- ``--attack slow-uploads``: A opens ``--slow`` uploads from four keys, each sending one byte every 2 s (and
  another when answered). A holds at most its share of the upload slots, and each trickle ends in 408
  ``Request.BodyTimeout``; B also uploads ``--uploads`` documents in each phase, and their answers are counted.

A's clients wait ``Retry-After`` when refused, as clients do; ``--ignore-retry-after`` makes them call again at
once, which turns the attack into a request flood (what the rate limits are for).

The bench measures how well the expensive work is isolated, so it lifts the per-key rate limits
(``EVAULT_RATE_LIMIT``, ``EVAULT_RATE_LIMIT_COPIES``), and by default the organisation's too: one key of A's with
no limit of its own stands for an organisation with as many keys as it likes. ``--org-rate-limit default`` keeps
the service's default organisation limit (``EVAULT_RATE_LIMIT_ORG``, three keys' worth of the default per-key
limit, paced with a burst of a tenth of it), ``--org-rate-limit QUOTA/WINDOW`` sets one and ``--org-burst N`` its
burst (``EVAULT_RATE_LIMIT_ORG_BURST``), ``--org-upload-burst N`` its uploads' burst
(``EVAULT_RATE_LIMIT_ORG_UPLOAD_BURST``), ``--max-uploads-per-org N`` its uploads in flight
(``EVAULT_MAX_UPLOADS_PER_ORG``, and the per-key cap at most that): then A's attack is what the limit lets through
(its burst at once, then one request per WINDOW/QUOTA seconds), and its excess is answered 429
``Request.OrgRateLimited`` at the edge. B's measurement starts ``--lead`` seconds (1) after A's first answer, so B
meets what A's pace lets through, after most of A's burst; with ``--lead 0`` B meets the burst too. Tenant B's
requests are the measurement, not a client under test: with an organisation limit on they are spread over as many
organisations of B's (each with its own envelope) as keep every one of them within its burst, so B is never
refused.

The report counts A's answers by status and gives B's p50/p99 under attack as ratios of its idle ones.

    python bench/copy_latency.py [--attack copies|compliance-many-copies|rehearsal-bomb|upload-flood|slow-uploads]
        [--pages N] [--copies N] [--requests N] [--copiers C] [--slow N] [--uploads N] [--ignore-retry-after]
        [--worker-nice N] [--org-rate-limit lifted|default|QUOTA/WINDOW] [--org-burst N] [--org-upload-burst N]
        [--max-uploads-per-org N] [--lead S] [--json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from storage.settings import EdgeSettings, Settings
from vault.runtime import Runtime, open_runtime
from vault.tenancy import SCOPES, authenticate, create_api_key, create_organisation

ROOT = Path(__file__).resolve().parents[1]
API = "/api/v2/partner"
UPLOAD_ATTACKS = ("rehearsal-bomb", "upload-flood")


def tenant(runtime: Runtime, client: httpx.Client, pdf: bytes) -> tuple[dict[str, str], str]:
    """A new organisation with one vaulted envelope: (headers, envelope id)."""
    with runtime.db.session() as session:
        org = create_organisation(session, f"Bench {uuid.uuid4().hex[:6]}")
        _, raw = create_api_key(session, org.id, "bench", list(SCOPES))
    headers = {"X-API-Key": raw}
    body = {"kind": "paper", "title": "Bench", "secured_party": {"name": "First Bank"}}
    envelope_id = client.post(f"{API}/envelopes", json=body, headers=headers).json()["id"]
    response = client.post(
        f"{API}/envelopes/{envelope_id}/vault-in-upload",
        content=pdf,
        headers={**headers, "Content-Type": "application/pdf"},
    )
    response.raise_for_status()
    return headers, envelope_id


def org_keys(runtime: Runtime, headers: dict[str, str], count: int) -> list[dict[str, str]]:
    """The key of ``headers`` and ``count - 1`` more keys of its organisation."""
    with runtime.db.session() as session:
        org_id = authenticate(session, headers["X-API-Key"]).org_id
        raws = [create_api_key(session, org_id, f"bench {n}", list(SCOPES))[1] for n in range(1, count)]
    return [headers, *({"X-API-Key": raw} for raw in raws)]


def new_envelope(client: httpx.Client, headers: dict[str, str]) -> str:
    body = {"kind": "paper", "title": "Bench", "secured_party": {"name": "First Bank"}}
    envelope_id: str = client.post(f"{API}/envelopes", json=body, headers=headers).json()["id"]
    return envelope_id


def uploads(
    client: httpx.Client, tenants: list[dict[str, str]], pdf: bytes, count: int
) -> tuple[list[float], Counter[int]]:
    """``count`` vault-ins of ``pdf`` into fresh envelopes, of each tenant in turn: their latencies and answers."""
    times: list[float] = []
    answers: Counter[int] = Counter()
    for n in range(count):
        headers = tenants[n % len(tenants)]
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


Trickler = Callable[[threading.Event, Counter[Any]], None]  # one slow client's loop, until the event is set


def slow_upload_attack(base: str, headers: dict[str, str], envelope_id: str) -> Trickler:
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


def attack_url(client: httpx.Client, attack: str, headers: dict[str, str], envelope_id: str, copies: int) -> str:
    """What A's clients call; for the compliance attack, A's envelope first gets its ``copies`` copies."""
    if attack == "copies":
        return f"{API}/envelopes/{envelope_id}/vault/copy/signed-url"
    issued = 0
    while issued < copies:
        response = client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers)
        if response.status_code == 503:
            time.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        response.raise_for_status()
        issued += 1
    return f"{API}/envelopes/{envelope_id}/compliance"


def latencies(client: httpx.Client, targets: list[tuple[str, dict[str, str]]], count: int) -> list[float]:
    """``count`` GETs, of each (url, headers) in turn: their latencies."""
    times = []
    for n in range(count):
        url, headers = targets[n % len(targets)]
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


def bombs() -> list[bytes]:
    hostile = importlib.import_module("tests.hostile_pdfs")
    return [
        hostile.repeated_contents(1000, 8_000_000),
        hostile.repeated_xobject(10_000, 1_000_000),
        hostile.nested_forms(),
        hostile.many_pages_sharing(100, 4_000_000),
    ]


def _upload_loop(
    base: str, headers: dict[str, str], files: list[bytes], stop: Any, ready: Any, outcomes: Counter[int]
) -> None:
    """Upload ``files`` to one envelope of A's, each with a wrong declared SHA-256: vetted, then refused (a bomb
    by the vetting, an ordinary file for its hash), so the envelope stays open."""
    body = {"kind": "paper", "title": "Bomb", "secured_party": {"name": "First Bank"}}
    with httpx.Client(base_url=base, timeout=300) as own:
        envelope_id = own.post(f"{API}/envelopes", json=body, headers=headers).json()["id"]
        sent = 0
        while not stop.is_set():
            status = own.post(
                f"{API}/envelopes/{envelope_id}/vault-in-upload",
                content=files[sent % len(files)],
                headers={**headers, "Content-Type": "application/pdf", "X-Content-SHA256": "0" * 64},
            )
            outcomes[status.status_code] += 1
            ready.set()
            sent += 1
            if status.status_code == 201:  # accepted despite the hash: a finding, and the envelope is used
                return
            if status.status_code in (429, 503):
                stop.wait(float(status.headers.get("Retry-After", "1")))


def attack_uploads(
    base: str, headers: dict[str, str], files: list[bytes], uploaders: int, signals: tuple[Any, Any, Any]
) -> None:
    """Tenant A's uploaders, in a process of their own: the client's work must not share the API's GIL.
    ``signals``: stop (set by the caller), ready (set at the first answer), done (a queue for the outcomes)."""
    stop, ready, done = signals
    outcomes: Counter[int] = Counter()
    threads = [
        threading.Thread(target=_upload_loop, args=(base, headers, files, stop, ready, outcomes))
        for _ in range(uploaders)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.put(dict(outcomes))


@contextmanager
def serve(bench: Any, runtime: Runtime, where: str, port: int, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """The API's base URL and process id: in a thread of this process, or alone in its own (``--server
    process``) with this run's limits, this process keeping the clients and the store."""
    if where == "thread":
        with bench.serve_in_thread(runtime, port) as base:
            yield base, os.getpid()
        return
    limits = {name: value for name, value in env.items() if name.startswith(("EVAULT_RATE", "EVAULT_PDF"))}
    with bench.serve_in_process(runtime, port, extra_env=limits) as api:
        yield api.base_url, api.pid


def b_organisations(runtime: Runtime, args: argparse.Namespace, slow: bool) -> int:
    """How many organisations B's requests are spread over so that none meets the organisation limit: B's GETs
    (warm-up and both phases), its uploads (an envelope and a vault-in each) and each tenant's set-up (two), within
    each organisation's burst (B's requests come faster than any pace, so only the burst is counted on)."""
    burst = runtime.settings.api.rate_limit_org_burst
    requests = 20 + 2 * args.requests + (4 * args.uploads if slow else 0)
    if burst <= 2:
        raise SystemExit("--org-rate-limit, --org-burst: a burst of at least 3 leaves tenant B room to measure")
    return max(1, -(-requests // (burst - 2)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    attacks = ["copies", "compliance-many-copies", *UPLOAD_ATTACKS, "slow-uploads"]
    parser.add_argument("--attack", choices=attacks, default="copies")
    parser.add_argument("--pages", type=int, default=2000, help="pages of tenant A's document")
    parser.add_argument("--copies", type=int, default=40, help="copies issued before the compliance attack")
    parser.add_argument("--requests", type=int, default=300, help="tenant B's GETs per phase")
    parser.add_argument("--copiers", type=int, default=4, help="tenant A's concurrent clients")
    parser.add_argument("--slow", type=int, default=16, help="slow-uploads: tenant A's trickling uploads")
    parser.add_argument("--uploads", type=int, default=10, help="slow-uploads: tenant B's uploads per phase")
    parser.add_argument(
        "--ignore-retry-after",
        action="store_true",
        help="A's clients call again at once when refused (a request flood: the per-key rate limit's job, lifted here)",
    )
    # below Linux's ephemeral range (32768+), where ports collide
    parser.add_argument("--port", type=int, default=26390)
    parser.add_argument("--port-base", type=int, default=26400, help="first embedded SeaweedFS port")
    parser.add_argument(
        "--worker-nice", type=int, default=None, help="EVAULT_PDF_WORKER_NICE for the vetting and stamping children"
    )
    parser.add_argument(
        "--org-rate-limit",
        default="lifted",
        metavar="lifted|default|QUOTA/WINDOW",
        help="EVAULT_RATE_LIMIT_ORG: lifted as the per-key limits (the default), the service's default, or this",
    )
    parser.add_argument(
        "--lead",
        type=float,
        default=1.0,
        help="seconds A's attack runs before B's measurement starts (0: B meets A's burst from its start)",
    )
    parser.add_argument(
        "--org-burst", type=int, default=None, help="EVAULT_RATE_LIMIT_ORG_BURST (default: the service's own)"
    )
    parser.add_argument(
        "--org-upload-burst",
        type=int,
        default=None,
        help="EVAULT_RATE_LIMIT_ORG_UPLOAD_BURST (default: the service's own)",
    )
    parser.add_argument(
        "--max-uploads-per-org",
        type=int,
        default=None,
        help="EVAULT_MAX_UPLOADS_PER_ORG, and EVAULT_MAX_UPLOADS_PER_KEY at most it (default: the service's own)",
    )
    parser.add_argument(
        "--server",
        choices=("thread", "process"),
        default="thread",
        help="the API in a thread of this process (beside B's client), or in its own process, as deployed",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    make_pdf = importlib.import_module("tests.pdf_factory").make_pdf
    vault_in_bench = importlib.import_module("bench.vault_in")
    slow = args.attack == "slow-uploads"

    with tempfile.TemporaryDirectory() as tmp:
        org_rate = {
            "lifted": vault_in_bench.BENCH_RATE_LIMIT,
            "default": "{}/{}".format(*Settings.from_env({"EVAULT_DATA_DIR": tmp}).api.rate_limit_org),
        }.get(args.org_rate_limit, args.org_rate_limit)
        env = {
            "EVAULT_DATA_DIR": tmp,
            "EVAULT_S3_EMBEDDED_PORT_BASE": str(args.port_base),
            "EVAULT_MAX_UPLOAD_BYTES": str(200 * 1024 * 1024),
            # the bench measures stamping's isolation, not the per-key rate limits (their own tests do)
            "EVAULT_RATE_LIMIT": vault_in_bench.BENCH_RATE_LIMIT,
            "EVAULT_RATE_LIMIT_COPIES": vault_in_bench.BENCH_RATE_LIMIT,
            "EVAULT_RATE_LIMIT_ORG": org_rate,  # lifted unless --org-rate-limit says otherwise
            **({} if args.org_burst is None else {"EVAULT_RATE_LIMIT_ORG_BURST": str(args.org_burst)}),
            **(
                {}
                if args.org_upload_burst is None
                else {"EVAULT_RATE_LIMIT_ORG_UPLOAD_BURST": str(args.org_upload_burst)}
            ),
            **({} if args.worker_nice is None else {"EVAULT_PDF_WORKER_NICE": str(args.worker_nice)}),
            **(
                {}
                if args.max_uploads_per_org is None
                else {
                    "EVAULT_MAX_UPLOADS_PER_ORG": str(args.max_uploads_per_org),
                    "EVAULT_MAX_UPLOADS_PER_KEY": str(
                        min(EdgeSettings().max_uploads_per_key, args.max_uploads_per_org)
                    ),
                }
            ),
        }
        runtime = open_runtime(Settings.from_env(env))
        try:
            served = serve(vault_in_bench, runtime, args.server, args.port, env)
            with served as (base, api_pid), httpx.Client(base_url=base, timeout=300) as client:
                uploading = args.attack in UPLOAD_ATTACKS
                b_pdf = make_pdf(pages=2)
                a_pdf = b_pdf if uploading or slow else make_pdf(pages=args.pages)
                a_headers, a_envelope = tenant(runtime, client, a_pdf)
                b_tenants = [tenant(runtime, client, b_pdf) for _ in range(b_organisations(runtime, args, slow))]
                b_keys = [headers for headers, _ in b_tenants]
                a_url = "" if uploading or slow else attack_url(client, args.attack, a_headers, a_envelope, args.copies)
                b_targets = [(f"{API}/envelopes/{envelope}", headers) for headers, envelope in b_tenants]
                latencies(client, b_targets, 20)  # warm-up
                if args.attack == "compliance-many-copies":  # the evidence workers started, as in a running service
                    assert client.get(a_url, headers=a_headers).status_code == 200
                alone = latencies(client, b_targets, args.requests)
                b_alone = uploads(client, b_keys, b_pdf, args.uploads) if slow else None

                stop = threading.Event()
                outcomes: Counter[Any] = Counter()
                copy_seconds: list[float] = []

                def copier() -> None:
                    with httpx.Client(base_url=base, timeout=300) as own:
                        while not stop.is_set():
                            started = time.perf_counter()
                            status = own.get(a_url, headers=a_headers)
                            outcomes[status.status_code] += 1
                            if status.status_code == 200:
                                copy_seconds.append(time.perf_counter() - started)
                            elif not args.ignore_retry_after:
                                stop.wait(float(status.headers.get("Retry-After", "1")))

                files = bombs() if args.attack == "rehearsal-bomb" else [make_pdf(pages=25)]
                rss_before = vault_in_bench.peak_rss(api_pid)  # the API's process
                spawn = multiprocessing.get_context("spawn")
                halt, ready, done = spawn.Event(), spawn.Event(), spawn.Queue()
                uploaders = spawn.Process(
                    target=attack_uploads, args=(base, a_headers, files, args.copiers, (halt, ready, done))
                )
                if slow:
                    keys = org_keys(runtime, a_headers, 4)
                    trickles = [slow_upload_attack(base, keys[n % 4], a_envelope) for n in range(args.slow)]
                    threads = [threading.Thread(target=trickle, args=(stop, outcomes)) for trickle in trickles]
                else:
                    threads = [threading.Thread(target=copier) for _ in range(0 if uploading else args.copiers)]
                for thread in threads:
                    thread.start()
                if uploading:
                    uploaders.start()
                    ready.wait(120)
                time.sleep(args.lead)  # let the attack get going
                loaded = latencies(client, b_targets, args.requests)
                b_loaded = uploads(client, b_keys, b_pdf, args.uploads) if slow else None
                stop.set()
                halt.set()
                for thread in threads:
                    thread.join()
                if uploading:
                    outcomes.update(done.get(timeout=300))
                    uploaders.join()
                rss_growth = vault_in_bench.peak_rss(api_pid) - rss_before
        finally:
            runtime.close()

    report: dict[str, Any] = {
        "attack": args.attack,
        "pages": 2 if slow else args.pages,
        "copies": args.copies if args.attack == "compliance-many-copies" else None,
        "copiers": args.slow if slow else args.copiers,
        "worker_nice": runtime.settings.pdf.worker_nice,
        "org_rate_limit": org_rate,
        "org_burst": runtime.settings.api.rate_limit_org_burst,
        "org_upload_burst": runtime.settings.api.rate_limit_org_upload_burst,
        "max_uploads_per_org": runtime.settings.edge.max_uploads_per_org,
        "lead_s": args.lead,
        "server": args.server,
        "b_organisations": len(b_tenants),
        "load_average": [round(v, 2) for v in os.getloadavg()],  # other processes share the cores
        "alone": summary(alone),
        "under_attack": summary(loaded),
        "attack_responses": dict(outcomes),
        "attack_p50_s": round(statistics.median(copy_seconds), 2) if copy_seconds else None,
        "peak_rss_growth_mib": round(rss_growth / 2**20, 1),
    }
    report["p50_ratio"] = round(report["under_attack"]["p50_ms"] / report["alone"]["p50_ms"], 2)
    report["p99_ratio"] = round(report["under_attack"]["p99_ms"] / report["alone"]["p99_ms"], 2)
    if b_alone is not None and b_loaded is not None:
        report["b_uploads_alone"] = {**summary(b_alone[0]), "answers": dict(b_alone[1])}
        report["b_uploads_under_attack"] = {**summary(b_loaded[0]), "answers": dict(b_loaded[1])}
        report["upload_p99_ratio"] = round(
            report["b_uploads_under_attack"]["p99_ms"] / report["b_uploads_alone"]["p99_ms"], 2
        )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        what = {
            "copies": f"{args.copiers} concurrent copy requests of a {args.pages}-page PDF",
            "compliance-many-copies": f"{args.copiers} clients calling compliance on an envelope with "
            f"{args.copies} copies of a {args.pages}-page PDF",
            "rehearsal-bomb": f"{args.copiers} clients uploading rehearsal bombs",
            "upload-flood": f"{args.copiers} clients uploading an ordinary 25-page PDF",
            "slow-uploads": f"{args.slow} uploads trickling a byte every 2 s from 4 keys",
        }[args.attack]
        print(
            f"tenant B GET latency, alone: p50 {report['alone']['p50_ms']} ms, p99 {report['alone']['p99_ms']} ms\n"
            f"with {what} by tenant A: "
            f"p50 {report['under_attack']['p50_ms']} ms, p99 {report['under_attack']['p99_ms']} ms "
            f"(x{report['p50_ratio']} / x{report['p99_ratio']})\n"
            f"tenant A responses: {dict(outcomes)}, successful p50 {report['attack_p50_s']} s; "
            f"the process's peak RSS grew {report['peak_rss_growth_mib']} MiB\n"
            f"EVAULT_RATE_LIMIT_ORG {org_rate}, burst {report['org_burst']} (uploads {report['org_upload_burst']}) "
            f"(tenant B's requests over {len(b_tenants)} organisations)"
        )
        if "upload_p99_ratio" in report:
            print(
                f"tenant B uploads alone: {report['b_uploads_alone']}, under attack: "
                f"{report['b_uploads_under_attack']} (p99 x{report['upload_p99_ratio']})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
