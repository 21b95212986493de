"""The relay's cost: boto3 put/get of 1 MiB objects straight on weed's S3 Unix socket vs through the relay.

One embedded SeaweedFS (behind its network namespace) under a temp directory; two boto3 clients with the same
credentials: ``relay`` talks to ``http://127.0.0.1:<port>`` (the relayed port, as the service does) and ``raw``
to ``http://localhost:<port>``, whose connections this script opens on the Unix socket itself (same Host
header, so SigV4 matches). Phases alternate (raw, relay; ``--rounds`` times), each ``--count`` objects with
``--concurrency`` threads; the median round per phase is reported, and relay/raw ratios.

    python bench/relay.py [--count N] [--concurrency C] [--rounds R] [--port-base P] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from botocore.awsrequest import AWSHTTPConnection

from storage.buckets import ensure_bucket
from storage.embedded_s3 import EmbeddedS3
from storage.s3_client import make_s3_client

MIB = 1 << 20
_RAW_HOST = "localhost"
_unix_path: list[str] = []
_tcp_new_conn = AWSHTTPConnection._new_conn


def _new_conn(self: Any) -> socket.socket:
    """botocore's connection, but on the Unix socket when the client is the ``raw`` one."""
    if self.host != _RAW_HOST or not _unix_path:
        return _tcp_new_conn(self)  # type: ignore[no-any-return]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(_unix_path[0])
    return sock


AWSHTTPConnection._new_conn = _new_conn  # type: ignore[method-assign]


def run_phase(client: Any, bucket: str, op: str, count: int, concurrency: int, body: bytes) -> float:
    def one(i: int) -> None:
        key = f"obj-{i % count}"
        if op == "put":
            client.put_object(Bucket=bucket, Key=key, Body=body)
        else:
            data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert len(data) == len(body)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(count)))
    return count / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=MIB)
    parser.add_argument("--port-base", type=int, default=int(os.environ.get("EVAULT_BENCH_PORT_BASE", "59330")))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    body = os.urandom(args.size)
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="evault-relay-") as tmp:
        store = EmbeddedS3(Path(tmp), args.port_base, buckets=[("bench-relay", False)], unprotected=False)
        with store:
            if store.boundary != "netns":
                print("no network namespace here: nothing to compare", file=sys.stderr)
                return 2
            _unix_path.append(str(store.socket_path))
            admin = store.admin_endpoint
            ensure_bucket(
                make_s3_client(admin.url, admin.access_key, admin.secret_key, admin.region),
                "bench-relay",
                object_lock=False,
            )
            ep = store.endpoint
            clients = {
                "relay": make_s3_client(ep.url, ep.access_key, ep.secret_key, ep.region),
                "raw": make_s3_client(ep.url.replace("127.0.0.1", _RAW_HOST), ep.access_key, ep.secret_key, ep.region),
            }
            for client in clients.values():  # warm-up: create the volumes, open the connections
                run_phase(client, "bench-relay", "put", args.concurrency * 2, args.concurrency, body)
            for _ in range(args.rounds):
                for op in ("put", "get"):
                    for name, client in clients.items():
                        rate = run_phase(client, "bench-relay", op, args.count, args.concurrency, body)
                        results.setdefault(f"{op}-{name}", []).append(rate)
    median = {k: statistics.median(v) for k, v in results.items()}
    report = {
        "size": args.size,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "count": args.count,
        "obj_per_s": {k: round(v, 1) for k, v in median.items()},
        "ratio_relay_over_raw": {op: round(median[f"{op}-relay"] / median[f"{op}-raw"], 3) for op in ("put", "get")},
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for op in ("put", "get"):
            raw, relay = median[f"{op}-raw"], median[f"{op}-relay"]
            print(f"{op}: raw {raw:.1f} obj/s, relay {relay:.1f} obj/s, ratio {relay / raw:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
