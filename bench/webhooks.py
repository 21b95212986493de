"""Webhook throughput: deliveries drained from the outbox by the sender vs the same signed POSTs sent directly.

A local receiver (answers 204) on 127.0.0.1; one organisation whose webhook points at it (allowed network);
SQLite under a temp directory. ``--count`` org-level ``integrity.failed`` events are appended (each in its own
transaction, which queues its delivery through the outbox hook; not timed). Phases:

- ``outbox``: a :class:`~vault.webhooks.sender.Sender` runs until every delivery is recorded as delivered
  (lease, claim, re-check of the target, signing, POST, the attempt's record);
- ``raw``: the same number of bodies signed and POSTed by ``--concurrency`` threads with the same transport,
  and nothing recorded.

Reported: deliveries per second of each, and outbox/raw.

    python bench/webhooks.py [--count N] [--concurrency C] [--port P] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlmodel import col, func, select

from compliance.ledger.events import Actor, append_event
from storage.db import Database
from storage.ids import new_id, utcnow
from storage.models import WebhookDelivery
from storage.settings import WebhookSettings
from vault.tenancy import create_organisation
from vault.webhooks.config import WebhookChange, configure_webhook
from vault.webhooks.outbox import install_outbox
from vault.webhooks.secret_box import SecretBox
from vault.webhooks.sender import Sender
from vault.webhooks.signing import new_key, sign
from vault.webhooks.targets import resolve
from vault.webhooks.transport import post


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


def _delivered(db: Database) -> int:
    with db.read_session() as session:
        query = select(func.count()).select_from(WebhookDelivery).where(col(WebhookDelivery.status) == "delivered")
        return int(session.exec(query).one())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--port", type=int, default=16990)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", args.port), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{args.port}/hooks"
    settings = WebhookSettings(
        allow_networks=("127.0.0.0/8",), concurrency=args.concurrency, per_org=args.concurrency, timeout_seconds=10
    )
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}")
        db.migrate()
        install_outbox()
        with db.session() as session:
            org_id = create_organisation(session, "bench").id
        box = SecretBox(os.urandom(32))  # the outbox opens the sealed key for every attempt, as the service does
        configure_webhook(db, settings, box, org_id, WebhookChange(url=url))
        for i in range(args.count):
            with db.session() as session:
                append_event(
                    session,
                    actor=Actor(org_id, source="bench"),
                    event_type="integrity.failed",
                    occurred_at=utcnow(),
                    data={"code": "Bench.Event", "subject": {"n": i}, "message": "bench", "run_id": "run_bench"},
                )

        stop = threading.Event()
        sender = Sender(db, settings, box)
        started = time.perf_counter()
        thread = threading.Thread(target=sender.run, args=(stop,), daemon=True)
        thread.start()
        while _delivered(db) < args.count:
            time.sleep(0.02)
        outbox_seconds = time.perf_counter() - started
        stop.set()
        thread.join()
        db.dispose()

    key = new_key("v1")
    target = resolve(url, settings.allow_networks)
    bodies = [json.dumps({"type": "integrity.failed", "n": i}).encode() for i in range(args.count)]

    def send(body: bytes) -> None:
        webhook_id, stamp = new_id("msg"), int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign([key], webhook_id, stamp, body),
        }
        assert post(target, body, headers, 10).outcome == "delivered"

    started = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        list(pool.map(send, bodies))
    raw_seconds = time.perf_counter() - started
    server.shutdown()

    result = {
        "count": args.count,
        "concurrency": args.concurrency,
        "outbox_per_second": round(args.count / outbox_seconds, 1),
        "raw_per_second": round(args.count / raw_seconds, 1),
        "outbox_over_raw": round(raw_seconds / outbox_seconds, 3),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.count} deliveries, {args.concurrency} workers: outbox {result['outbox_per_second']}/s, "
            f"raw signed POSTs {result['raw_per_second']}/s; outbox/raw = {result['outbox_over_raw']}"
        )


if __name__ == "__main__":
    main()
