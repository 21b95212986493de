"""Keys, scopes and tenant isolation on every vault endpoint."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from storage.ids import utcnow
from storage.models import ApiKey
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from vault.runtime import Runtime

ENDPOINTS = [
    ("GET", "/envelopes/{id}", "envelopes:read"),
    ("POST", "/envelopes/{id}/vault-in-signed", "vault:write"),
    ("POST", "/envelopes/{id}/vault-in-upload", "vault:write"),
    ("GET", "/envelopes/{id}/vault/signed-url", "vault:read"),
    ("GET", "/envelopes/{id}/vault/copy/signed-url", "vault:read"),
    ("POST", "/envelopes/{id}/vault-out", "vault:release"),
    ("GET", "/envelopes/{id}/proof", "compliance:read"),
]


def _call(client: Any, method: str, path: str, headers: dict[str, str]) -> Any:
    if method == "GET":
        return client.get(f"{API}{path}", headers=headers)
    if path.endswith("vault-out"):
        return client.post(f"{API}{path}", json={"reason": "payoff"}, headers=headers)
    return client.post(f"{API}{path}", content=make_pdf(), headers={**headers, "Content-Type": "application/pdf"})


@pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS)
def test_every_endpoint_needs_key_scope_and_own_tenant(
    client: Any, make_key: Any, tenant: Any, method: str, path: str, scope: str
) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    target = path.format(id=envelope_id)

    none = _call(client, method, target, {})
    assert (none.status_code, none.json()["code"]) == (401, "Auth.MissingKey")

    _, other_scopes_key = make_key(
        [s for s in ("envelopes:read", "vault:read", "compliance:read") if s != scope] or ["esign:write"], org_id=org_id
    )
    denied = _call(client, method, target, {"X-API-Key": other_scopes_key})
    assert (denied.status_code, denied.json()["code"]) == (403, "Auth.InsufficientScope")
    assert denied.json()["details"]["required_scope"] == scope

    _, stranger = make_key()
    hidden = _call(client, method, target, {"X-API-Key": stranger})
    assert (hidden.status_code, hidden.json()["code"]) == (404, "Envelope.NotFound")


def test_unknown_envelope_is_404(client: Any, tenant: Any) -> None:
    _, headers = tenant
    response = client.get(f"{API}/envelopes/env_doesnotexist000000", headers=headers)
    assert (response.status_code, response.json()["code"]) == (404, "Envelope.NotFound")


def test_key_failures_have_distinct_codes(client: Any, runtime: Runtime, make_key: Any) -> None:
    org_id, raw = make_key(["envelopes:read"])
    url = f"{API}/envelopes/env_doesnotexist000000"
    assert client.get(url, headers={"X-API-Key": "sk_live_123"}).json()["code"] == "Auth.MalformedKey"
    assert client.get(url, headers={"X-API-Key": "lk_" + "x" * 43}).json()["code"] == "Auth.UnknownKey"
    with runtime.db.session() as session:
        key = session.exec(select(ApiKey).where(ApiKey.org_id == org_id)).one()
        key.expires_at = utcnow() - timedelta(seconds=1)
    assert client.get(url, headers={"X-API-Key": raw}).json()["code"] == "Auth.KeyExpired"
    with runtime.db.session() as session:
        key = session.exec(select(ApiKey).where(ApiKey.org_id == org_id)).one()
        key.expires_at = None
        key.revoked_at = utcnow()
    revoked = client.get(url, headers={"X-API-Key": raw})
    assert (revoked.status_code, revoked.json()["code"]) == (401, "Auth.KeyRevoked")


def test_keys_are_stored_only_as_hashes(runtime: Runtime, make_key: Any) -> None:
    org_id, raw = make_key()
    with runtime.db.session() as session:
        key = session.exec(select(ApiKey).where(ApiKey.org_id == org_id)).one()
    assert raw not in (key.key_hash, key.prefix) and raw.startswith(key.prefix) and len(raw) >= 43


def test_openapi_and_health_are_served(client: Any) -> None:
    spec = client.get("/api/v2/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert "/api/v2/partner/envelopes/{envelope_id}/vault-out" in paths
    assert client.get("/health").json() == {"status": "ok"}
