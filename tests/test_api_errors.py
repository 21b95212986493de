"""Every response carries the server's request id; errors name it in the body; 503s say when to retry."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from storage.object_store import ObjectStore
from storage.s3_client import make_s3_client
from storage.settings import Settings
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from tests.ports import aux_port
from vault.api.app import create_app
from vault.runtime import Runtime, open_runtime

SERVER_ID = re.compile(r"req_[0-9a-f]{32}")


def _assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert SERVER_ID.fullmatch(response.headers["x-request-id"])
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def test_unknown_route_is_404_with_request_id(client: Any) -> None:
    _assert_error(client.get("/no/such/route"), 404, "Route.NotFound")


def test_wrong_method_is_405_with_allow_and_request_id(client: Any) -> None:
    response = client.delete("/health")
    _assert_error(response, 405, "Route.MethodNotAllowed")
    assert "GET" in response.headers["allow"]


def test_missing_key_is_401_with_request_id(client: Any) -> None:
    _assert_error(client.get(f"{API}/envelopes/env_x"), 401, "Auth.MissingKey")


def test_validation_error_is_400_with_request_id(client: Any, tenant: Any) -> None:
    _, headers = tenant
    body = _assert_error(client.post(f"{API}/envelopes", json={"kind": 7}, headers=headers), 400, "Request.Invalid")
    assert body["details"]


def test_body_too_large_is_413_with_request_id(client: Any, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    _assert_error(upload(client, headers, envelope_id, make_pdf(size_bytes=3 * 1024 * 1024)), 413, "Request.TooLarge")


def test_success_has_a_fresh_server_id_per_request(client: Any) -> None:
    first, second = client.get("/health"), client.get("/health")
    assert first.status_code == second.status_code == 200
    assert SERVER_ID.fullmatch(first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert "x-correlation-id" not in first.headers


def test_caller_id_is_a_correlation_id_never_the_request_id(client: Any) -> None:
    response = client.get("/no/such/route", headers={"X-Request-Id": "caller-123"})
    body = _assert_error(response, 404, "Route.NotFound")
    assert response.headers["x-correlation-id"] == body["correlation_id"] == "caller-123"
    assert body["request_id"] != "caller-123"
    ok = client.get("/health", headers={"X-Request-Id": "caller-123"})
    assert ok.headers["x-correlation-id"] == "caller-123" and ok.headers["x-request-id"] != "caller-123"
    insane = client.get("/health", headers={"X-Request-Id": "bad id\twith spaces"})
    assert "x-correlation-id" not in insane.headers


def test_ready_reports_every_check(runtime: Runtime) -> None:
    runtime.start_checkpointer()
    with TestClient(create_app(runtime)) as client:
        response = client.get("/ready")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "checks": dict.fromkeys(
            ["database", "authoritative_bucket", "copies_bucket", "signing_key", "checkpointer", "store"], "ok"
        ),
        "boundary": "external",
    }


def test_ready_names_failing_checks(runtime: Runtime) -> None:
    runtime.start_checkpointer()
    with TestClient(create_app(runtime)) as client:
        assert client.get("/ready").status_code == 200
        runtime.probe_client = make_s3_client("http://127.0.0.1:1", "k", "s", "us-east-1", quick=True)
        runtime._stop.set()  # the checkpointer ends
        runtime._checkpointer.join(10)  # type: ignore[union-attr]
        response = client.get("/ready")
    body = _assert_error(response, 503, "Service.NotReady")
    assert body["details"]["failing"] == ["authoritative_bucket", "checkpointer", "copies_bucket"]
    assert response.headers["retry-after"]


def test_storage_unavailable_is_503_with_retry_after(runtime: Runtime, client: Any, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    dead = make_s3_client(f"http://127.0.0.1:{aux_port('dead_store')}", "k", "s", "us-east-1", quick=True)
    runtime.authoritative = ObjectStore(dead, runtime.settings.s3.authoritative_bucket)
    response = upload(client, headers, envelope_id, make_pdf())
    _assert_error(response, 503, "Storage.Unavailable")
    assert int(response.headers["retry-after"]) > 0


def test_locked_sqlite_is_503_database_unavailable(vault_env: dict[str, str], tmp_path: Path) -> None:
    """SQLite's write lock held past the busy timeout: 503 with Retry-After, not a 500 after a long wait."""
    path = tmp_path / "locked.sqlite3"
    env = {**vault_env, "EVAULT_DATABASE_URL": f"sqlite:///{path}", "EVAULT_DATABASE_TIMEOUT": "1"}
    runtime = open_runtime(Settings.from_env(env))
    try:
        with TestClient(create_app(runtime)) as client:
            from vault.tenancy import SCOPES, create_api_key, create_organisation

            with runtime.db.session() as session:
                org = create_organisation(session, "Locked org")
                _, raw = create_api_key(session, org.id, "k", list(SCOPES))
            holder = sqlite3.connect(path, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            try:
                started = time.monotonic()
                response = client.post(
                    f"{API}/envelopes",
                    json={"kind": "paper", "title": "Loan", "secured_party": {"name": "Bank"}},
                    headers={"X-API-Key": raw},
                )
                elapsed = time.monotonic() - started
            finally:
                holder.rollback()
                holder.close()
            _assert_error(response, 503, "Database.Unavailable")
            assert response.headers["retry-after"] and elapsed < 5
            create_envelope(client, {"X-API-Key": raw})  # works again once the lock is gone
    finally:
        runtime.close()


@pytest.mark.parametrize("statement", ["SELECT * FROM no_such_table"])
def test_a_query_bug_is_still_a_500(runtime: Runtime, statement: str) -> None:
    """Only unavailability maps to 503: SQLite reports a missing table with the same exception class."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from vault.api.errors import database_unavailable

    with pytest.raises(SQLAlchemyError) as caught, runtime.db.read_session() as session:
        session.execute(text(statement))
    assert not database_unavailable(caught.value)
