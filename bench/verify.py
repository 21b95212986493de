"""Verifier benchmark: ``evault verify`` against raw ``get_object`` + ``hashlib.sha256`` over the same objects.

One run starts the real stack (embedded SeaweedFS + SQLite under a temp directory), vaults a corpus through the
API (untimed), then times, interleaved and at the same concurrency:

- ``raw``: a pool of threads doing ``get_object`` + streaming SHA-256 of every recorded version (the floor);
- ``verify``: ``evault verify`` as a separate process attached to the running store (as the nightly job runs),
  its peak resident memory read from ``getrusage`` of the child.

Then the log pass alone: chain and tree verification over ``--log-entries`` synthetic entries held in memory
(parse, chain link, compact-range tree, head-map bookkeeping), in entries/s.

``--envelopes N [N ...]`` measures only the log pass's peak memory against the number of envelopes: a child
process (the code under this checkout, and under ``--before`` in the same run) audits a log of ``--rounds-per-
envelope`` events per envelope, round-robin, with a ``map.root`` after every ``--map-every`` of them, generated as
it goes (an entry's predecessor is regenerated, not remembered), so the per-envelope state is all that grows.
The map roots claimed are zeros: every ``map.root`` is a finding naming the derived root, and the digest of
those derived roots must be the same for both checkouts (the same maps).

    python bench/verify.py            # 2,000 PDFs of 256 KiB + 20 of 50 MiB, a log of 10^6 entries
    python bench/verify.py --quick    # 200 of 256 KiB + 2 of 8 MiB, a log of 10^5 entries
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from litestar.testing import TestClient  # noqa: E402
from sqlmodel import select  # noqa: E402

from bench.log import make_events  # noqa: E402
from compliance.ledger.merkle import leaf_hash  # noqa: E402
from compliance.sources import Sources  # noqa: E402
from compliance.verifier.context import Context, MemoryRunLog  # noqa: E402
from compliance.verifier.logs import LogAudit  # noqa: E402
from compliance.verifier.scope import Scope  # noqa: E402
from storage.models import VaultedDocument  # noqa: E402
from storage.settings import Settings  # noqa: E402
from tests.pdf_factory import make_pdf  # noqa: E402
from vault.api.app import create_app  # noqa: E402
from vault.runtime import open_runtime  # noqa: E402
from vault.tenancy import SCOPES, create_api_key, create_organisation  # noqa: E402

API = "/api/v2/partner"


def _vault_corpus(client: Any, headers: dict[str, str], count: int, size: int, threads: int, first: int) -> None:
    template = make_pdf(size_bytes=size)

    def one(n: int) -> None:
        envelope = client.post(
            f"{API}/envelopes",
            json={"kind": "paper", "title": f"Loan {n}", "secured_party": {"name": "Bank"}},
            headers=headers,
        ).json()["id"]
        # Same size, different bytes: the title carries the index.
        data = template.replace(b"Loan agreement", f"Loan {n:09d}".encode()[:14], 1)
        sha = hashlib.sha256(data).hexdigest()
        answer = client.post(
            f"{API}/envelopes/{envelope}/vault-in-upload",
            content=data,
            headers={**headers, "Content-Type": "application/pdf", "X-Content-SHA256": sha},
        )
        assert answer.status_code == 201, answer.text

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(first, first + count)))


def _raw(client: Any, bucket: str, objects: list[tuple[str, str]], concurrency: int) -> tuple[float, int]:
    def one(item: tuple[str, str]) -> int:
        body = client.get_object(Bucket=bucket, Key=item[0], VersionId=item[1])["Body"]
        digest, size = hashlib.sha256(), 0
        for chunk in body.iter_chunks(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
        return size

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        total = sum(pool.map(one, objects))
    return time.perf_counter() - start, total


# Runs ``evault verify`` and prints the process's own peak RSS (VmHWM, KiB) last on stderr. Not ``wait4``'s
# ru_maxrss: Linux folds the pre-exec peak into it, i.e. the forking benchmark's own (corpus-sized) RSS.
_PEAK = (
    "import atexit, runpy, sys\n"
    "def peak():\n"
    "    status = open('/proc/self/status').read()\n"
    "    print('VmHWM', status.split('VmHWM:')[1].split()[0], file=sys.stderr)\n"
    "atexit.register(peak)\n"
    "sys.argv[0] = 'evault'\n"
    "runpy.run_module('vault.cli.main', run_name='__main__')\n"
)


def _verify_process(
    env: dict[str, str], concurrency: int, profile: str | None, root: Path = ROOT
) -> tuple[float, int, str]:
    """``evault verify`` (the code under ``root``) as the nightly job runs it, and its peak RSS in KiB."""
    args = ["verify", "--concurrency", str(concurrency)]
    command = [sys.executable, "-c", _PEAK, *args]
    if profile:
        command = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "vault.cli.main", *args]
    start = time.perf_counter()
    done = subprocess.run(
        command, env={**env, "PYTHONPATH": str(root)}, cwd=root, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"evault verify exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    peaks = [line.split()[1] for line in done.stderr.splitlines() if line.startswith("VmHWM ")]
    return elapsed, int(peaks[-1]) if peaks else 0, done.stdout.strip().splitlines()[0]


# Audits a generated log in this process (the code on PYTHONPATH) and prints one JSON line: peak RSS (VmHWM) and
# RSS after imports in KiB, seconds, and a digest of the derived map roots. Uses only APIs both checkouts have.
_LOG_MEMORY = """
import hashlib, json, sys, time, datetime as dt
from compliance.ledger.events import Actor, entry_bytes
from compliance.ledger.merkle import leaf_hash
from compliance.sources import Sources
from compliance.verifier.context import Context, MemoryRunLog
from compliance.verifier.logs import LogAudit
from compliance.verifier.scope import Scope
from storage.models import Event

envelopes, rounds, every = (int(a) for a in sys.argv[1:4])
org, start = "org_benchmem0000000000", dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
actor = Actor(org, key_id="k", key_prefix="lk_b")
def kib(field):
    return int(open("/proc/self/status").read().split(field + ":")[1].split()[0])
def index(j):
    return j + j // every
def entry(e, r):
    j = r * envelopes + e
    prev = hashlib.sha256(entry(e, r - 1)).hexdigest() if r else None
    return entry_bytes(org_id=org, leaf_index=index(j), envelope_id=f"env_{e:020d}", chain_seq=r, prev=prev,
        event_type="vault.copy_issued", occurred_at=start + dt.timedelta(seconds=j), actor=actor, data={"j": j})
def events():
    for j in range(envelopes * rounds):
        r, e = divmod(j, envelopes)
        data = entry(e, r)
        yield Event(org_id=org, leaf_index=index(j), envelope_id=f"env_{e:020d}", chain_seq=r,
            event_type="vault.copy_issued", occurred_at=start, entry=data, entry_hash=hashlib.sha256(data).hexdigest())
        if (j + 1) % every == 0:
            i = index(j) + 1
            data = entry_bytes(org_id=org, leaf_index=i, envelope_id=None, chain_seq=None, prev=None,
                event_type="map.root", occurred_at=start, actor=actor, data={"map_root": "00" * 32, "version": i})
            yield Event(org_id=org, leaf_index=i, envelope_id=None, chain_seq=None, event_type="map.root",
                occurred_at=start, entry=data, entry_hash=hashlib.sha256(data).hexdigest())
runs = MemoryRunLog()
ctx = Context(Sources(None, None, None, None, "bench"), Scope(), runs)
audit = LogAudit(ctx, org, index(envelopes * rounds))
leaf = [b""]
audit._stored_leaf = lambda _session, _index: leaf[0]
base, began = kib("VmRSS"), time.perf_counter()
for event in events():
    leaf[0] = leaf_hash(event.entry)
    audit.entry(None, event)
seconds = time.perf_counter() - began
findings = list(runs.findings.values())
assert findings and all(f.code == "Map.RootMismatch" for f in findings), findings[:3]
derived = "".join(f.details["derived"] for f in sorted(findings, key=lambda f: f.details["leaf_index"]))
print(json.dumps({"peak_kib": kib("VmHWM"), "after_imports_kib": base, "seconds": round(seconds, 1),
    "map_roots": len(findings), "roots_digest": hashlib.sha256(derived.encode()).hexdigest()[:16]}))
"""


def _log_memory(root: Path, envelopes: int, rounds: int, every: int) -> dict[str, Any]:
    """The log pass's peak RSS (and the rest of ``_LOG_MEMORY``'s line) under the code at ``root``."""
    done = subprocess.run(
        [sys.executable, "-c", _LOG_MEMORY, str(envelopes), str(rounds), str(every)],
        env={**os.environ, "PYTHONPATH": str(root)},
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the log-memory child under {root} exited {done.returncode}:\n{done.stderr}")
    line: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return line


def _log_memory_section(args: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS of the log pass per envelope count, this checkout beside ``--before``, and the map roots agreeing."""
    out: dict[str, Any] = {"rounds_per_envelope": args.rounds_per_envelope, "map_every": args.map_every}
    for envelopes in args.envelopes:
        row: dict[str, Any] = {"after": _log_memory(ROOT, envelopes, args.rounds_per_envelope, args.map_every)}
        if args.before:
            row["before"] = _log_memory(Path(args.before), envelopes, args.rounds_per_envelope, args.map_every)
            row["same_map_roots"] = row["before"]["roots_digest"] == row["after"]["roots_digest"]
            row["peak_mib_before_after"] = [round(row[k]["peak_kib"] / 1024, 1) for k in ("before", "after")]
        out[str(envelopes)] = row
    return out


def _start_cost(env: dict[str, str]) -> float:
    """Interpreter start plus the imports of ``evault verify`` (what a tiny vault cannot amortise)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import vault.cli.main"], env=env, cwd=ROOT, check=True)
    return time.perf_counter() - start


def _log_bench(entries: int) -> float:
    """Chain + tree + map bookkeeping over in-memory entries (the database fetch is not in this number)."""
    org = "org_benchlog0000000000"
    events = make_events(entries, org, per_envelope=10, spread=True)
    leaves = [leaf_hash(e.entry) for e in events]
    runs = MemoryRunLog()
    ctx = Context(Sources(None, None, None, None, "bench"), Scope(), runs)  # type: ignore[arg-type]
    audit = LogAudit(ctx, org, entries)
    audit._stored_leaf = lambda _session, index: leaves[index]  # type: ignore[method-assign]
    start = time.perf_counter()
    for event in events:
        audit.entry(None, event)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    assert not runs.findings, list(runs.findings.values())[:3]
    return entries / elapsed


def _vault_or_reuse(runtime: Any, data: Path, small: int, large: int, large_size: int, threads: int) -> None:
    """Vault the corpus through the API once; a ``--data`` directory that already holds it is reused."""
    marker = data / "bench-corpus.json"
    wanted = {"small": small, "large": large, "large_size": large_size}
    if marker.exists():
        if json.loads(marker.read_text()) != wanted:
            raise SystemExit(f"{data} holds another corpus: {marker.read_text()}")
        return
    with runtime.db.session() as session:
        org = create_organisation(session, "Bench").id
        _, raw_key = create_api_key(session, org, "bench", list(SCOPES))
    headers = {"X-API-Key": raw_key}
    started = time.perf_counter()
    with TestClient(create_app(runtime), timeout=600) as client:
        _vault_corpus(client, headers, small, 256 * 1024, threads, 0)
        _vault_corpus(client, headers, large, large_size, threads, small)
        client.post(f"{API}/log/checkpoint", headers=headers)
    print(f"vaulted {small + large} documents in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    marker.write_text(json.dumps(wanted))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--small", type=int, help="number of 256 KiB documents (default 2,000; --quick 200)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--port-base", type=int, default=24040)
    parser.add_argument("--data", help="keep the vaulted corpus here and reuse it on the next run")
    parser.add_argument("--vault-threads", type=int, default=3, help="concurrent uploads while vaulting")
    parser.add_argument("--profile", help="write a cProfile of the (last) verify process here")
    parser.add_argument("--skip-log", action="store_true")
    parser.add_argument("--log-entries", type=int)
    parser.add_argument("--before", help="another checkout (e.g. the previous commit) timed in the same rounds")
    parser.add_argument("--envelopes", type=int, nargs="+", help="only the log pass's peak RSS at these counts")
    parser.add_argument("--rounds-per-envelope", type=int, default=3, help="with --envelopes: events per envelope")
    parser.add_argument("--map-every", type=int, default=10_000, help="with --envelopes: entries between map.roots")
    args = parser.parse_args()
    if args.envelopes:
        print(json.dumps(_log_memory_section(args), indent=2))
        return
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    small, large = (200, 2) if args.quick else (2000, 20)
    small = args.small if args.small is not None else small
    large_size = (8 if args.quick else 50) * 1024 * 1024
    log_entries = args.log_entries or (100_000 if args.quick else 1_000_000)
    result: dict[str, Any] = {"corpus": f"{small} x 256 KiB + {large} x {large_size >> 20} MiB"}
    with tempfile.TemporaryDirectory(prefix="evault-bench-verify-") as tmp:
        data = Path(args.data) if args.data else Path(tmp) / "data"
        data.mkdir(parents=True, exist_ok=True)
        env = {
            "EVAULT_DATA_DIR": str(data),
            "EVAULT_S3_EMBEDDED_PORT_BASE": str(args.port_base),
            "EVAULT_MAX_UPLOAD_BYTES": str(large_size + 1024 * 1024),
            "EVAULT_PDF_MAX_DECODED_BYTES": str(2 * large_size),
            "EVAULT_RETENTION_DAYS": "1",
            "EVAULT_RATE_LIMIT": "1000000/60",  # the benchmark measures the verifier, not the limiter
        }
        runtime = open_runtime(Settings.from_env(env))
        try:
            _vault_or_reuse(runtime, data, small, large, large_size, args.vault_threads)
            with runtime.db.read_session() as session:
                objects = [(d.s3_key, d.s3_version_id) for d in session.exec(select(VaultedDocument))]
            child_env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("EVAULT_")},
                **env,
                "PYTHONPATH": str(ROOT),
            }
            raw_times, verify_times, peak, line, total = [], [], 0, "", 0
            before_times: list[float] = []
            before_peak = 0
            for _ in range(args.rounds):
                elapsed, total = _raw(runtime.s3_client, runtime.authoritative.bucket, objects, args.concurrency)
                raw_times.append(elapsed)
                elapsed, peak_kib, line = _verify_process(child_env, args.concurrency, args.profile)
                verify_times.append(elapsed)
                peak = max(peak, peak_kib)
                if args.before:
                    elapsed, peak_kib, _ = _verify_process(child_env, args.concurrency, None, Path(args.before))
                    before_times.append(elapsed)
                    before_peak = max(before_peak, peak_kib)
            start_s = _start_cost(child_env)
        finally:
            runtime.close()
    raw_s, verify_s = min(raw_times), min(verify_times)
    result.update(
        objects=len(objects),
        megabytes=round(total / 1e6, 1),
        concurrency=args.concurrency,
        raw_s=[round(t, 2) for t in raw_times],
        verify_s=[round(t, 2) for t in verify_times],
        start_and_imports_s=round(start_s, 2),
        raw_objects_per_s=round(len(objects) / raw_s, 1),
        raw_mb_per_s=round(total / 1e6 / raw_s, 1),
        verify_objects_per_s=round(len(objects) / verify_s, 1),
        verify_mb_per_s=round(total / 1e6 / verify_s, 1),
        ratio_to_raw=round(raw_s / verify_s, 2),  # fastest raw round over fastest verify round
        # each round's raw and verify ran back to back, so each round's ratio saw the same load on the machine
        ratio_per_round=[round(r / v, 2) for r, v in zip(raw_times, verify_times, strict=True)],
        ratio_median_of_rounds=round(
            statistics.median([r / v for r, v in zip(raw_times, verify_times, strict=True)]), 2
        ),
        verify_peak_rss_mb=round(peak / 1024, 1),
        verify_says=line,
    )
    if before_times:
        result.update(
            before_verify_s=[round(t, 2) for t in before_times],
            before_ratio_to_raw=round(raw_s / min(before_times), 2),
            before_peak_rss_mb=round(before_peak / 1024, 1),
        )
    if not args.skip_log:
        result["log_entries"] = log_entries
        result["log_entries_per_s"] = round(_log_bench(log_entries))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
