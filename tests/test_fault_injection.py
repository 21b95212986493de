"""Faults under load: the object store killed and restarted, PostgreSQL stopped and restarted.

Clients keep creating envelopes and vaulting PDFs while the fault strikes. Every answer must be a success or a
clear 503 with ``Retry-After`` — never a 500 — and afterwards nothing is lost or half-vaulted: each client
retries what was refused with the same bytes, the reconciler finishes or releases what a dead request left,
every vaulted object reads back byte-exact, and the verifier finds nothing.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from compliance.integrity import verify_vault
from storage.embedded_s3 import EmbeddedS3
from storage.keys import authoritative_key
from storage.settings import Settings
from tests.fixtures_s3 import s3_port_base
from tests.helpers import API, store_env, upload
from tests.pdf_factory import make_pdf
from tests.pg_cluster import PrivateCluster
from vault.api.app import create_app
from vault.reconcile import reconcile_claims
from vault.runtime import Runtime, open_runtime
from vault.tenancy import SCOPES, create_api_key, create_organisation

CLIENTS = 3
OK = {200, 201}


@dataclass
class Load:
    """Clients that each create an envelope and vault a PDF of their own, again and again, until stopped."""

    client: Any
    headers: dict[str, str]
    org_id: str
    stop: threading.Event = field(default_factory=threading.Event)
    answers: list[tuple[str, int, str | None, str | None]] = field(default_factory=list)
    # envelope id -> the PDF its client tried to vault, and whether that vault-in succeeded
    vaults: dict[str, tuple[bytes, bool]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _note(self, what: str, response: Any) -> None:
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        with self.lock:
            self.answers.append((what, response.status_code, body.get("code"), response.headers.get("retry-after")))

    def _one(self, n: int) -> None:
        body = {"kind": "paper", "title": f"Loan {n}", "secured_party": {"name": "First Bank"}}
        created = self.client.post(f"{API}/envelopes", json=body, headers=self.headers)
        self._note("create", created)
        if created.status_code != 201:
            return
        envelope_id = created.json()["id"]
        pdf = make_pdf(text=f"loan {n} {uuid.uuid4().hex}")
        vaulted = upload(self.client, self.headers, envelope_id, pdf)
        self._note("vault-in", vaulted)
        with self.lock:
            self.vaults[envelope_id] = (pdf, vaulted.status_code in OK)

    def run(self) -> list[threading.Thread]:
        def loop(worker: int) -> None:
            n = 0
            while not self.stop.is_set():
                n += 1
                self._one(worker * 10_000 + n)

        threads = [threading.Thread(target=loop, args=(w,), daemon=True) for w in range(CLIENTS)]
        for thread in threads:
            thread.start()
        return threads


def _under_load(load: Load, fault: Callable[[], None], recover: Callable[[], None]) -> None:
    threads = load.run()
    time.sleep(2)
    fault()
    time.sleep(3)
    recover()
    time.sleep(3)
    load.stop.set()
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive()


def _check_answers(load: Load, unavailable: set[str]) -> None:
    assert any(status in OK for _, status, _, _ in load.answers), "the load never got through"
    refused = [a for a in load.answers if a[1] not in OK]
    assert refused, "the fault was never felt: the test proved nothing"
    for what, status, code, retry_after in refused:
        assert status == 503 and code in unavailable, (what, status, code)
        assert retry_after is not None and int(retry_after) > 0


def _settle_and_verify(runtime: Runtime, load: Load) -> None:
    """Retry every refused vault-in with the same bytes, reconcile, then prove nothing is lost or half-done."""
    for envelope_id, (pdf, done) in load.vaults.items():
        if not done:
            again = upload(load.client, load.headers, envelope_id, pdf)
            assert again.status_code in OK, again.text
    assert all(r.outcome != "skipped" for r in reconcile_claims(runtime.custody(), timedelta(0)))
    for envelope_id, (pdf, _) in load.vaults.items():
        shown = load.client.get(f"{API}/envelopes/{envelope_id}", headers=load.headers).json()
        assert shown["vault"]["state"] == "vaulted", shown
        (doc,) = shown["vault"]["documents"]
        assert doc["sha256"] == hashlib.sha256(pdf).hexdigest()
        key = authoritative_key(load.org_id, envelope_id, 0, doc["sha256"])
        assert runtime.authoritative.read(key, doc["version_id"]) == pdf
    report = verify_vault(runtime.sources(), timedelta(0))
    assert report["clean"], report["findings"]


def _open(env: dict[str, str]) -> tuple[Runtime, TestClient[Any], dict[str, str], str]:
    runtime = open_runtime(Settings.from_env(env))
    with runtime.db.session() as session:
        org = create_organisation(session, "Under load")
        _, raw = create_api_key(session, org.id, "load", list(SCOPES))
    return runtime, TestClient(create_app(runtime)), {"X-API-Key": raw}, org.id


@pytest.fixture
def own_store(tmp_path: Path) -> Iterator[EmbeddedS3]:
    """A store of this test's own, so killing it harms no other test."""
    store = EmbeddedS3(tmp_path / "store", s3_port_base() + 40, buckets=(), unprotected=False)
    store.start()
    try:
        yield store
    finally:
        store.stop(timeout=3)


def test_store_killed_and_restarted_under_load(vault_env: dict[str, str], own_store: EmbeddedS3) -> None:
    runtime, client, headers, org_id = _open({**vault_env, **store_env(own_store, uuid.uuid4().hex[:10])})
    try:
        with client:
            load = Load(client, headers, org_id)

            def kill() -> None:
                assert own_store.pid is not None
                os.kill(own_store.pid, signal.SIGKILL)

            def restart() -> None:
                own_store.stop(timeout=3)
                own_store.start()

            _under_load(load, kill, restart)
            _check_answers(load, {"Storage.Unavailable"})
            _settle_and_verify(runtime, load)
    finally:
        runtime.close()


def test_postgres_stopped_and_restarted_under_load(vault_env: dict[str, str], private_pg: PrivateCluster) -> None:
    env = {**vault_env, "EVAULT_DATABASE_URL": private_pg.url, "EVAULT_DATABASE_TIMEOUT": "2"}
    runtime, client, headers, org_id = _open(env)
    try:
        with client:
            load = Load(client, headers, org_id)
            _under_load(load, private_pg.stop, private_pg.start)
            _check_answers(load, {"Database.Unavailable"})
            _settle_and_verify(runtime, load)
    finally:
        runtime.close()
