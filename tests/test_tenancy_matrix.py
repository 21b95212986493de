"""Every partner endpoint against seven kinds of key, generated from the application's route table.

The endpoints are read from ``create_app(...).routes`` when the module is collected, so an endpoint added later
is in the matrix without anyone listing it, and one that forgets to declare ``opt["scope"]`` fails here. Each
path parameter is filled with a real identifier: the caller's own for the key checks (so only the key can be
the reason for a refusal), another organisation's for the tenancy check. Endpoints without an envelope in their
path must answer another organisation's key without revealing any of the other organisation's identifiers.
Nothing a refused request does may change either organisation's log. The app is built once for the module.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import TestClient
from sqlmodel import select

from compliance.ledger.events import log_size
from storage.embedded_s3 import EmbeddedS3
from storage.ids import utcnow
from storage.models import ApiKey, VaultedDocument, VaultRecord, WebhookDelivery
from storage.settings import Settings
from tests.helpers import create_envelope, own_database, store_env, upload
from tests.pdf_factory import make_pdf
from vault.api.app import create_app
from vault.keys import revoke_key
from vault.runtime import Runtime, open_runtime
from vault.tenancy import SCOPES, create_api_key, create_organisation

PARTNER = "/api/v2/partner"
PUBLIC_HOOK = "https://93.184.215.14/hooks"  # a public address: configurable, never called (no sender runs here)
PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
EXPECTED = {
    "none": (401, "Auth.MissingKey"),
    "malformed": (401, "Auth.MalformedKey"),
    "unknown": (401, "Auth.UnknownKey"),
    "revoked": (401, "Auth.KeyRevoked"),
    "expired": (401, "Auth.KeyExpired"),
    "wrong_scope": (403, "Auth.InsufficientScope"),
    "other_org": (404, "Envelope.NotFound"),
}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # as the route table has it, e.g. /api/v2/partner/envelopes/{envelope_id:str}
    scope: str | None

    @property
    def params(self) -> list[str]:
        return PARAM.findall(self.path)

    def url(self, ids: dict[str, str]) -> str:
        """Each path parameter filled with the identifier of that name, or the envelope id for others."""
        return PARAM.sub(lambda m: ids.get(m[1], ids["envelope_id"]), self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path.removeprefix(PARTNER)}"


def partner_endpoints(app: Litestar) -> list[Endpoint]:
    """Every (method, path) under the partner router; Litestar's automatic OPTIONS answers are not endpoints."""
    found = {
        Endpoint(method, route.path, handler.opt.get("scope"))
        for route in app.routes
        if isinstance(route, HTTPRoute) and route.path.startswith(PARTNER)
        for handler in route.route_handlers
        for method in handler.http_methods - {"OPTIONS"}
    }
    return sorted(found, key=lambda e: (e.path, e.method))


def _route_table() -> list[Endpoint]:
    """The endpoints at collection time: ``create_app`` only reads settings before it is served."""
    return partner_endpoints(create_app(SimpleNamespace(settings=Settings.from_env({}))))  # type: ignore[arg-type]


ENDPOINTS = _route_table()

# What a well-formed request to an endpoint carries, so that only the key or the tenant can refuse it.
REQUESTS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/envelopes"): {"json": {"kind": "paper", "title": "Matrix", "secured_party": {"name": "Bank"}}},
    ("POST", "/envelopes/{envelope_id}/vault-in-signed"): {"pdf": True},
    ("POST", "/envelopes/{envelope_id}/vault-in-upload"): {"pdf": True},
    ("POST", "/envelopes/{envelope_id}/vault-out"): {"json": {"reason": "payoff"}},
    ("POST", "/envelopes/{envelope_id}/upload"): {"pdf": True},
    ("POST", "/envelopes/{envelope_id}/void"): {"json": {"reason": "matrix"}},
    ("GET", "/log/proof/inclusion"): {"params": {"leaf_index": 0, "tree_size": 1}},
    ("GET", "/log/proof/consistency"): {"params": {"first": 0, "second": 1}},
    ("PATCH", "/webhook"): {"json": {"url": PUBLIC_HOOK}},
    ("POST", "/envelopes/{envelope_id}/retention"): {"json": {"retain_until": "2099-01-01T00:00:00Z"}},
    ("POST", "/envelopes/{envelope_id}/legal-hold"): {"json": {"reason": "matrix"}},
    ("DELETE", "/envelopes/{envelope_id}/legal-hold"): {"json": {"reason": "matrix"}},
    ("POST", "/envelopes/{envelope_id}/amendments"): {"json": {"type": "modification", "data": {"rate": "4%"}}},
    ("POST", "/envelopes/{envelope_id}/paper-in-attestation"): {
        "json": {"original": "held", "at": "2026-01-02T03:04:05Z", "attested_by": "Matrix Clerk"}
    },
    ("POST", "/envelopes/{envelope_id}/transfers"): {"json": {"to_organisation": "org_" + "0" * 20, "type": "control"}},
    ("POST", "/transfers/{transfer_id}/reject"): {"json": {"reason": "matrix"}},
    ("POST", "/transfers/{transfer_id}/countersign"): {"json": {"key_id": "sha256:" + "0" * 64, "signature": "AA=="}},
    ("POST", "/embed/token"): {"json": {"envelope_id": "env_" + "0" * 20, "recipient_id": "rcp_" + "0" * 20}},
}


def _request_parts(endpoint: Endpoint) -> dict[str, Any]:
    key = (endpoint.method, PARAM.sub(lambda m: "{" + m[1] + "}", endpoint.path.removeprefix(PARTNER)))
    spec = REQUESTS.get(key, {} if endpoint.method in ("GET", "DELETE") else {"json": {}})
    if spec.get("pdf"):
        return {"content": make_pdf(), "headers": {"Content-Type": "application/pdf"}}
    return dict(spec)


@dataclass
class World:
    client: TestClient[Any]
    runtime: Runtime
    own: dict[str, str]  # the caller's organisation: org_id, envelope_id, document_id
    other: dict[str, str]  # another organisation's, with data of its own
    keys: dict[str, str]  # kind -> raw key of the caller's organisation
    missing_scope: dict[str, str]  # scope -> a key of the caller's organisation with every scope but that one
    other_key_prefix: str

    def logs(self) -> tuple[int, int]:
        with self.runtime.db.read_session() as session:
            return log_size(session, self.own["org_id"]), log_size(session, self.other["org_id"])


def _tenant(client: TestClient[Any], runtime: Runtime, name: str, receiver: str) -> tuple[dict[str, str], str, str]:
    """An organisation with a webhook and a vaulted envelope offered to ``receiver`` (a pending transfer):
    (ids, all-scopes raw key, key prefix)."""
    with runtime.db.session() as session:
        org_id = create_organisation(session, name).id
        key, raw = create_api_key(session, org_id, "all scopes", list(SCOPES))
    hook = client.patch(f"{PARTNER}/webhook", json={"url": PUBLIC_HOOK}, headers={"X-API-Key": raw})
    assert hook.status_code == 200, hook.text
    envelope_id = create_envelope(client, {"X-API-Key": raw})
    assert upload(client, {"X-API-Key": raw}, envelope_id, make_pdf()).status_code == 201
    with runtime.db.read_session() as session:
        record = session.exec(select(VaultRecord).where(VaultRecord.envelope_id == envelope_id)).one()
        document = session.exec(select(VaultedDocument).where(VaultedDocument.record_id == record.id)).one()
        delivery = session.exec(select(WebhookDelivery).where(WebhookDelivery.org_id == org_id)).first()
    assert delivery is not None
    offer = {"to_organisation": receiver, "type": "control"}
    transfer = client.post(f"{PARTNER}/envelopes/{envelope_id}/transfers", json=offer, headers={"X-API-Key": raw})
    assert transfer.status_code == 201, transfer.text
    ids = {"org_id": org_id, "envelope_id": envelope_id, "document_id": document.id, "delivery_id": delivery.id}
    return ids | {"transfer_id": transfer.json()["id"]}, raw, key.prefix


@pytest.fixture(scope="module")
def world(embedded_s3: EmbeddedS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("matrix")
    with ExitStack() as stack:
        env = {
            "EVAULT_DATA_DIR": str(directory / "data"),
            "EVAULT_DATABASE_URL": stack.enter_context(own_database(directory, "evault")),
            **store_env(embedded_s3, uuid.uuid4().hex[:10]),
            "EVAULT_RETENTION_DAYS": "1",
            # ~400 requests in seconds, mostly of one organisation: more than its paced limit lets through at
            # once (tests/test_org_rate_limit.py tests the limits; this file, who may see what)
            "EVAULT_RATE_LIMIT": "100000/60",
        }
        runtime = open_runtime(Settings.from_env(env))
        stack.callback(runtime.close)
        client = stack.enter_context(TestClient(create_app(runtime)))
        with runtime.db.session() as session:
            receiver = create_organisation(session, "Receiver").id
        own, own_key, _ = _tenant(client, runtime, "Caller", receiver)
        other, _, other_prefix = _tenant(client, runtime, "Other", receiver)
        with runtime.db.session() as session:
            revoked = create_api_key(session, own["org_id"], "revoked", list(SCOPES))
            expired = create_api_key(session, own["org_id"], "expired", list(SCOPES))
            missing = {s: create_api_key(session, own["org_id"], "lacks " + s, [*set(SCOPES) - {s}]) for s in SCOPES}
        with runtime.db.session() as session:
            revoke_key(session, revoked[0].id)
            stored = session.get(ApiKey, expired[0].id)
            assert stored is not None
            stored.expires_at = utcnow() - timedelta(seconds=1)
            session.add(stored)
        kinds = {
            "none": "",
            "malformed": "sk_live_not_an_evault_key",
            "unknown": "lk_" + "x" * 43,
            "revoked": revoked[1],
            "expired": expired[1],
            "other_org": own_key,
        }
        yield World(client, runtime, own, other, kinds, {s: raw for s, (_, raw) in missing.items()}, other_prefix)


def test_the_route_table_has_the_partner_api() -> None:
    shown = {str(e) for e in ENDPOINTS}
    assert {"POST /envelopes", "GET /envelopes/{envelope_id:str}", "GET /log/checkpoint"} <= shown
    assert len(ENDPOINTS) >= 12


def test_the_served_app_has_the_collected_routes(world: World) -> None:
    assert partner_endpoints(world.client.app) == ENDPOINTS


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_every_partner_route_declares_a_known_scope(endpoint: Endpoint) -> None:
    assert endpoint.scope in SCOPES, f'{endpoint} lacks opt["scope"] (or names an unknown one): {endpoint.scope!r}'


@pytest.mark.parametrize("kind", list(EXPECTED))
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_key_matrix(world: World, endpoint: Endpoint, kind: str) -> None:
    assert endpoint.scope in SCOPES, f'{endpoint} lacks opt["scope"]'
    if kind == "wrong_scope":
        raw = world.missing_scope[endpoint.scope]
    else:
        raw = world.keys[kind]
    ids = world.other if kind == "other_org" else world.own
    parts = _request_parts(endpoint)
    headers = {**parts.pop("headers", {}), **({"X-API-Key": raw} if raw else {})}
    before = world.logs()

    response = world.client.request(endpoint.method, endpoint.url(ids), headers=headers, **parts)

    json_answer = response.headers.get("content-type", "").startswith("application/json")
    body = response.json() if json_answer or response.status_code >= 400 else {}
    if kind != "other_org":
        assert (response.status_code, body["code"]) == EXPECTED[kind], response.text
        assert world.logs() == before, "a refused request changed a log"
        if kind == "wrong_scope":
            assert body["details"]["required_scope"] == endpoint.scope
        return
    assert world.logs()[1] == before[1], "another organisation's key changed this organisation's log"
    if "envelope_id" in endpoint.params:
        assert (response.status_code, body["code"]) == EXPECTED[kind], response.text
    elif endpoint.params:
        assert response.status_code == 404 and body["code"].endswith(".NotFound"), response.text
    else:
        assert response.status_code < 500, response.text
        revealed = [v for v in (*world.other.values(), world.other_key_prefix) if v in response.text]
        assert not revealed, f"{endpoint} showed another organisation's {revealed}"
