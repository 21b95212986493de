"""ETags, conditional requests (If-Match on every mutation, If-None-Match on reads) and rate limits."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient
from sqlmodel import col, select

from storage.models import Event, StagedDocument
from storage.settings import Settings
from tests.helpers import API, create_envelope, server_port, upload
from tests.pdf_factory import make_pdf
from vault.api.app import create_app
from vault.runtime import Runtime, open_runtime
from vault.tenancy import SCOPES, create_api_key, create_organisation

ROOT = Path(__file__).resolve().parent.parent


def _events(runtime: Runtime, envelope_id: str) -> list[str]:
    with runtime.db.read_session() as session:
        rows = session.exec(select(Event).where(Event.envelope_id == envelope_id).order_by(col(Event.chain_seq)))
        return [e.event_type for e in rows]


def _etag(client: Any, headers: dict[str, str], envelope_id: str) -> str:
    tag: str = client.get(f"{API}/envelopes/{envelope_id}", headers=headers).headers["etag"]
    return tag


def test_etag_changes_with_state_not_with_urls_or_copies(client: Any, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    created = _etag(client, headers, envelope_id)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    vaulted = _etag(client, headers, envelope_id)
    assert vaulted != created
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/signed-url", headers=headers).status_code == 200
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers).status_code == 200
    assert _etag(client, headers, envelope_id) == vaulted
    unchanged = client.get(f"{API}/envelopes/{envelope_id}", headers={**headers, "If-None-Match": vaulted})
    assert unchanged.status_code == 304 and unchanged.headers["etag"] == vaulted
    stale = client.get(f"{API}/envelopes/{envelope_id}", headers={**headers, "If-None-Match": created})
    assert stale.status_code == 200


@pytest.mark.parametrize("operation", ["void", "upload", "vault-in", "vault-out"])
def test_stale_if_match_is_412_and_changes_nothing(client: Any, runtime: Runtime, tenant: Any, operation: str) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    if operation == "vault-out":
        assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    stale = _etag(client, headers, envelope_id)
    assert client.post(
        f"{API}/envelopes/{envelope_id}/upload",
        content=make_pdf(),
        headers={**headers, "Content-Type": "application/pdf"},
    ).status_code in (201, 409)
    current = _etag(client, headers, envelope_id)
    assert current != stale or operation == "vault-out"
    if operation == "vault-out":  # nothing else moves a vaulted envelope: make the tag stale by hand
        stale = f'"{envelope_id}.1"'
    before = _events(runtime, envelope_id)
    with runtime.db.read_session() as session:
        staged_before = len(list(session.exec(select(StagedDocument))))

    def call(tag: str) -> Any:
        h = {**headers, "If-Match": tag}
        url = f"{API}/envelopes/{envelope_id}"
        if operation == "void":
            return client.post(f"{url}/void", json={"reason": "x"}, headers=h)
        if operation == "upload":
            return client.post(f"{url}/upload", content=make_pdf(), headers={**h, "Content-Type": "application/pdf"})
        if operation == "vault-in":
            return client.post(
                f"{url}/vault-in-upload", content=make_pdf(), headers={**h, "Content-Type": "application/pdf"}
            )
        return client.post(f"{url}/vault-out", json={"reason": "payoff"}, headers=h)

    refused = call(stale)
    assert refused.status_code == 412, refused.text
    assert refused.json()["code"] == "Envelope.PreconditionFailed"
    assert refused.json()["details"]["etag"] == current
    assert _events(runtime, envelope_id) == before
    assert _etag(client, headers, envelope_id) == current
    with runtime.db.read_session() as session:
        assert len(list(session.exec(select(StagedDocument)))) == staged_before
    accepted = call(current)
    assert accepted.status_code in (200, 201), accepted.text
    assert accepted.headers["etag"] != current


# --- rate limits --------------------------------------------------------------------------------------------

_STRUCTURED = re.compile(r'"(default|copies|org)";r=(\d+);t=(\d+)')


@pytest.fixture
def limited(vault_env: dict[str, str]) -> Iterator[tuple[Runtime, TestClient[Any]]]:
    env = {**vault_env, "EVAULT_RATE_LIMIT": "4/60", "EVAULT_RATE_LIMIT_COPIES": "1/60"}
    opened = open_runtime(Settings.from_env(env))
    try:
        with TestClient(create_app(opened)) as test_client:
            yield opened, test_client
    finally:
        opened.close()


def _key(runtime: Runtime) -> dict[str, str]:
    with runtime.db.session() as session:
        org = create_organisation(session, "Limited")
        _, raw = create_api_key(session, org.id, "k", list(SCOPES))
    return {"X-API-Key": raw}


def test_rate_limit_headers_and_429_with_retry_after(limited: Any) -> None:
    runtime, client = limited
    headers = _key(runtime)
    remaining = []
    for _ in range(4):
        response = client.get(f"{API}/envelopes", headers=headers)
        assert response.status_code == 200
        assert response.headers["ratelimit-policy"] == '"default";q=4;w=60, "org";q=12;w=60'  # org: 3 keys' worth
        (name, r, t), org = _STRUCTURED.findall(response.headers["ratelimit"])
        assert name == "default" and 1 <= int(t) <= 60 and org[0] == "org"
        remaining.append(int(r))
    assert remaining == [3, 2, 1, 0]
    refused = client.get(f"{API}/envelopes", headers=headers)
    assert refused.status_code == 429
    assert refused.json()["code"] == "Request.RateLimited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit"].startswith('"default";r=0;')
    other = client.get(f"{API}/envelopes", headers=_key(runtime))  # per key
    assert other.status_code == 200


def test_copies_have_a_stricter_policy(limited: Any) -> None:
    runtime, client = limited
    headers = _key(runtime)
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    first = client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers)
    assert first.status_code == 200
    assert first.headers["ratelimit-policy"] == '"default";q=4;w=60, "copies";q=1;w=60, "org";q=12;w=60'
    assert [m[0] for m in _STRUCTURED.findall(first.headers["ratelimit"])] == ["default", "copies", "org"]
    second = client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers)
    assert (second.status_code, second.json()["details"]["policy"]) == (429, "copies")
    assert "retry-after" in second.headers


@contextmanager
def _serve(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """``evault serve`` in a process of its own on a free port; yields its API base URL."""
    port = server_port()
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "vault.cli.main", "serve"],
            env={**os.environ, **env, "EVAULT_PORT": str(port), "PYTHONPATH": str(ROOT)},
            stdout=log,
            stderr=log,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                assert server.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "evault serve did not answer /health"
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.3)
            yield base + API
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)


def test_the_count_is_shared_by_every_worker(limited: Any, vault_env: dict[str, str], tmp_path: Path) -> None:
    """Two ``evault serve`` processes over one database draw on one quota (4 a minute), whichever one answers."""
    runtime, _ = limited
    headers = _key(runtime)
    env = {**vault_env, "EVAULT_RATE_LIMIT": "4/60", "EVAULT_RATE_LIMIT_COPIES": "1/60"}
    with _serve(env, tmp_path / "a.log") as first, _serve(env, tmp_path / "b.log") as second:
        if time.time() % 60 > 50:  # the fixed window must not roll over between the six requests
            time.sleep(61 - time.time() % 60)
        answers = [httpx.get(f"{url}/envelopes", headers=headers, timeout=10) for url in (first, second) * 3]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429, 429]
    assert [a.headers["ratelimit"].split(";")[1] for a in answers[:4]] == ["r=3", "r=2", "r=1", "r=0"]
    assert {a.json()["code"] for a in answers[4:]} == {"Request.RateLimited"}
