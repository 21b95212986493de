"""Idempotency-Key on every POST: replay, reuse, in flight, expiry, organisation scope, and concurrency."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from typing import Any

from sqlmodel import col, select

from storage.ids import utcnow
from storage.models import Envelope, Event, IdempotencyRecord
from tests.helpers import API, create_envelope, together
from tests.pdf_factory import make_pdf
from vault.idempotency import begin, fingerprint
from vault.runtime import Runtime

TRIALS = 4


def _body(external_id: str | None = None) -> dict[str, Any]:
    return {
        "kind": "paper",
        "title": "Loan",
        "external_id": external_id or f"loan-{uuid.uuid4().hex[:10]}",
        "secured_party": {"name": "Bank", "id": "b-1"},
    }


def _count(runtime: Runtime, external_id: str) -> int:
    with runtime.db.read_session() as session:
        return len(list(session.exec(select(Envelope).where(Envelope.external_id == external_id))))


def _events(runtime: Runtime, envelope_id: str) -> list[str]:
    with runtime.db.read_session() as session:
        rows = session.exec(select(Event).where(Event.envelope_id == envelope_id).order_by(col(Event.chain_seq)))
        return [e.event_type for e in rows]


def test_a_retry_replays_the_first_response(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    body = _body()
    keyed = {**headers, "Idempotency-Key": "create-1"}
    first = client.post(f"{API}/envelopes", json=body, headers=keyed)
    assert first.status_code == 201
    reordered = dict(reversed(list(body.items())))  # canonical JSON: key order does not matter
    again = client.post(f"{API}/envelopes", json=reordered, headers=keyed)
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["idempotent-replayed"] == "true"
    assert _count(runtime, body["external_id"]) == 1
    assert _events(runtime, first.json()["id"]) == ["envelope.created"]


def test_same_key_other_body_is_key_reused(client: Any, tenant: Any) -> None:
    _, headers = tenant
    keyed = {**headers, "Idempotency-Key": "k-2"}
    assert client.post(f"{API}/envelopes", json=_body(), headers=keyed).status_code == 201
    other = client.post(f"{API}/envelopes", json=_body(), headers=keyed)
    assert (other.status_code, other.json()["code"]) == (409, "Idempotency.KeyReused")
    envelope_id = create_envelope(client, headers)
    path = client.post(f"{API}/envelopes/{envelope_id}/void", json={"reason": "x"}, headers=keyed)
    assert (path.status_code, path.json()["code"]) == (409, "Idempotency.KeyReused")


def test_in_flight_key_is_409_in_progress(client: Any, runtime: Runtime, tenant: Any) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    path = f"{API}/envelopes/{envelope_id}/void"
    from vault.api.conventions import json_digest

    fp = fingerprint("POST", path, json_digest(b'{"reason":"x"}'))
    began = begin(runtime.db, org_id, "busy", fp, timedelta(hours=1), timedelta(minutes=5))
    response = client.post(path, json={"reason": "x"}, headers={**headers, "Idempotency-Key": "busy"})
    assert (response.status_code, response.json()["code"]) == (409, "Idempotency.InProgress")
    lease = runtime.settings.vault.claim_lease_seconds
    assert 1 <= int(response.headers["retry-after"]) <= lease
    assert _events(runtime, envelope_id) == ["envelope.created"]
    assert began is not None


def test_a_key_left_in_flight_by_a_dead_process_is_taken_over_after_the_lease(
    client: Any, runtime: Runtime, tenant: Any
) -> None:
    # A replica killed mid-request leaves its row in flight; a retry of the same request with the same key, on
    # any replica, runs once the claim lease has passed (not after the 15-minute reconciliation grace).
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    path = f"{API}/envelopes/{envelope_id}/void"
    from vault.api.conventions import json_digest

    fp = fingerprint("POST", path, json_digest(b'{"reason":"x"}'))
    begin(runtime.db, org_id, "orphaned", fp, timedelta(hours=1), timedelta(minutes=5))
    lease = runtime.settings.vault.claim_lease_seconds
    with runtime.db.session() as session:
        row = session.exec(select(IdempotencyRecord).where(IdempotencyRecord.key == "orphaned")).one()
        row.created_at = row.created_at - timedelta(seconds=lease + 1)
        session.add(row)
    response = client.post(path, json={"reason": "x"}, headers={**headers, "Idempotency-Key": "orphaned"})
    assert response.status_code == 200, response.text
    assert _events(runtime, envelope_id) == ["envelope.created", "envelope.voided"]


def test_a_failed_request_leaves_no_record_so_a_retry_runs(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    keyed = {**headers, "Idempotency-Key": "fails-first", "Content-Type": "application/pdf"}
    url = f"{API}/envelopes/{envelope_id}/vault-in-upload"
    refused = client.post(url, content=b"not a pdf", headers=keyed)
    assert refused.status_code == 400
    with runtime.db.read_session() as session:
        assert session.exec(select(IdempotencyRecord)).first() is None
    pdf = make_pdf()
    first = client.post(url, content=pdf, headers={**keyed, "Idempotency-Key": "vault-1"})
    assert first.status_code == 201 and first.json()["replayed"] is False
    again = client.post(url, content=pdf, headers={**keyed, "Idempotency-Key": "vault-1"})
    assert (again.status_code, again.json()) == (201, first.json())
    assert _events(runtime, envelope_id).count("vault.vaulted_in") == 1


def test_multipart_with_a_new_boundary_is_the_same_request(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    pdf = make_pdf()
    keyed = {**headers, "Idempotency-Key": "multi-1"}
    url = f"{API}/envelopes/{envelope_id}/upload"
    files = {"document": ("loan.pdf", pdf, "application/pdf")}
    first = client.post(url, files=files, headers=keyed)
    assert first.status_code == 201, first.text
    again = client.post(url, files=files, headers=keyed)  # httpx draws a new random boundary
    assert (again.status_code, again.json()) == (201, first.json())
    other = client.post(url, files={"document": ("other.pdf", pdf, "application/pdf")}, headers=keyed)
    assert (other.status_code, other.json()["code"]) == (409, "Idempotency.KeyReused")
    assert len(client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()["staged_documents"]) == 1
    sha = hashlib.sha256(pdf).hexdigest()
    vaulted = client.post(f"{API}/envelopes/{envelope_id}/vault-in-upload", headers={**headers, "Idempotency-Key": "v"})
    assert vaulted.status_code == 201 and vaulted.json()["vault"]["documents"][0]["sha256"] == sha
    replay = client.post(f"{API}/envelopes/{envelope_id}/vault-in-upload", headers={**headers, "Idempotency-Key": "v"})
    assert (replay.status_code, replay.json()) == (201, vaulted.json())


def test_keys_are_per_organisation_and_expire(client: Any, runtime: Runtime, tenant: Any, make_key: Any) -> None:
    _, headers = tenant
    _, other = make_key()
    body = _body()
    first = client.post(f"{API}/envelopes", json=body, headers={**headers, "Idempotency-Key": "shared"})
    second = client.post(f"{API}/envelopes", json=body, headers={"X-API-Key": other, "Idempotency-Key": "shared"})
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]
    with runtime.db.session() as session:
        for row in session.exec(select(IdempotencyRecord)):
            row.expires_at = utcnow() - timedelta(seconds=1)
            session.add(row)
    after = client.post(f"{API}/envelopes", json=body, headers={**headers, "Idempotency-Key": "shared"})
    assert (after.status_code, after.json()["code"]) == (409, "Envelope.DuplicateExternalId")  # ran afresh


def test_the_record_commits_with_the_change(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    response = client.post(
        f"{API}/envelopes/{envelope_id}/void", json={"reason": "x"}, headers={**headers, "Idempotency-Key": "vd"}
    )
    assert response.status_code == 200
    with runtime.db.read_session() as session:
        row = session.exec(select(IdempotencyRecord).where(IdempotencyRecord.key == "vd")).one()
        envelope = session.get(Envelope, envelope_id)
    assert row.status == 200 and row.body == response.json() and envelope is not None
    assert envelope.status == "voided" and row.headers == {"ETag": response.headers["etag"]}


def test_invalid_key_is_400(client: Any, tenant: Any) -> None:
    _, headers = tenant
    response = client.post(f"{API}/envelopes", json=_body(), headers={**headers, "Idempotency-Key": "x" * 300})
    assert (response.status_code, response.json()["code"]) == (400, "Idempotency.InvalidKey")


def test_concurrent_requests_with_one_key_execute_once(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    for trial in range(TRIALS):
        body = _body()
        keyed = {**headers, "Idempotency-Key": f"race-{trial}"}
        a, b = together(
            lambda body=body, keyed=keyed: client.post(f"{API}/envelopes", json=body, headers=keyed),
            lambda body=body, keyed=keyed: client.post(f"{API}/envelopes", json=body, headers=keyed),
        )
        outcomes = sorted(
            (r.status_code, r.json().get("code") if r.status_code != 201 else r.json()["id"]) for r in (a, b)
        )
        assert _count(runtime, body["external_id"]) == 1, outcomes
        created = [r for r in (a, b) if r.status_code == 201]
        assert created and len({r.json()["id"] for r in created}) == 1, outcomes
        assert all(r.status_code == 201 or r.json()["code"] == "Idempotency.InProgress" for r in (a, b)), outcomes


def test_concurrent_vault_ins_with_one_key_vault_once(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    for trial in range(TRIALS):
        envelope_id = create_envelope(client, headers)
        pdf = make_pdf()
        keyed = {**headers, "Idempotency-Key": f"vrace-{trial}", "Content-Type": "application/pdf"}
        url = f"{API}/envelopes/{envelope_id}/vault-in-upload"
        a, b = together(
            lambda url=url, pdf=pdf, keyed=keyed: client.post(url, content=pdf, headers=keyed),
            lambda url=url, pdf=pdf, keyed=keyed: client.post(url, content=pdf, headers=keyed),
        )
        codes = sorted(r.status_code for r in (a, b))
        assert codes in ([201, 201], [201, 409]), (a.text, b.text)
        assert all(r.status_code == 201 or r.json()["code"] == "Idempotency.InProgress" for r in (a, b))
        assert _events(runtime, envelope_id).count("vault.vaulted_in") == 1
