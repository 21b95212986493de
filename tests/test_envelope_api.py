"""The partner API's envelope endpoints and the lifecycle state machine, over HTTP on the real stack."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlmodel import col, select

from storage.models import Event, StagedDocument, VaultedDocument
from storage.settings import Settings
from tests.helpers import API, EXPIRY_LEAD, create_envelope, sleep_past, upload
from tests.pdf_factory import make_pdf, make_signed_pdf
from vault.api.app import create_app
from vault.expiry import sweep
from vault.runtime import Runtime, open_runtime
from vault.tenancy import SCOPES, create_api_key, create_organisation


def _events(runtime: Runtime, envelope_id: str) -> list[str]:
    with runtime.db.read_session() as session:
        rows = session.exec(select(Event).where(Event.envelope_id == envelope_id).order_by(col(Event.chain_seq)))
        return [e.event_type for e in rows]


def _get(client: Any, headers: dict[str, str], envelope_id: str) -> dict[str, Any]:
    response = client.get(f"{API}/envelopes/{envelope_id}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _stage(client: Any, headers: dict[str, str], envelope_id: str, data: bytes, **extra: str) -> Any:
    return client.post(
        f"{API}/envelopes/{envelope_id}/upload",
        content=data,
        headers={**headers, "Content-Type": "application/pdf", **extra},
    )


@pytest.fixture
def short_lived(vault_env: dict[str, str]) -> Iterator[tuple[Runtime, TestClient[Any]]]:
    """A vault whose staged uploads expire after one second."""
    opened = open_runtime(Settings.from_env({**vault_env, "EVAULT_STAGING_TTL_SECONDS": "1"}))
    try:
        with TestClient(create_app(opened)) as test_client:
            yield opened, test_client
    finally:
        opened.close()


# --- create, read, list ----------------------------------------------------------------------------------


def test_create_answers_201_with_location_and_etag(client: Any, tenant: Any) -> None:
    _, headers = tenant
    body = {"kind": "paper", "title": "Loan", "secured_party": {"name": "Bank"}}
    response = client.post(f"{API}/envelopes", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"{API}/envelopes/{created['id']}"
    assert response.headers["etag"] == f'"{created["id"]}.1"'
    assert created["status"] == "awaiting_upload" and created["vault_state"] == "not_vaulted"
    assert client.get(response.headers["location"], headers=headers).json()["id"] == created["id"]


def test_duplicate_external_id_is_409_naming_the_existing_envelope(client: Any, tenant: Any, make_key: Any) -> None:
    _, headers = tenant
    first = create_envelope(client, headers, external_id="loan-7")
    again = client.post(
        f"{API}/envelopes", json={"kind": "paper", "title": "Other", "external_id": "loan-7"}, headers=headers
    )
    assert again.status_code == 409
    assert again.json()["code"] == "Envelope.DuplicateExternalId"
    assert again.json()["details"]["envelope_id"] == first
    _, other_key = make_key()  # another organisation may use the same external id
    assert create_envelope(client, {"X-API-Key": other_key}, external_id="loan-7") != first


def test_validation_errors_name_the_field(client: Any, tenant: Any) -> None:
    _, headers = tenant
    response = client.post(f"{API}/envelopes", json={"title": "no kind"}, headers=headers)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "Request.Invalid" and body["request_id"]
    assert [e["field"] for e in body["details"]["errors"]] == ["kind"]
    bad_title = client.post(f"{API}/envelopes", json={"kind": "paper", "title": "a\x00b"}, headers=headers)
    assert (bad_title.status_code, bad_title.json()["code"]) == (400, "Request.InvalidCharacter")
    assert bad_title.json()["details"]["field"] == "title"
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    expired = client.post(f"{API}/envelopes", json={"kind": "paper", "title": "t", "expires_at": past}, headers=headers)
    assert (expired.status_code, expired.json()["code"]) == (400, "Envelope.InvalidExpiry")


def test_method_not_allowed_carries_allow(client: Any, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    response = client.delete(f"{API}/envelopes/{envelope_id}/void", headers=headers)
    assert response.status_code == 405
    assert response.json()["code"] == "Route.MethodNotAllowed"
    assert "POST" in response.headers["allow"]


def test_unknown_or_malformed_id_is_404(client: Any, tenant: Any) -> None:
    _, headers = tenant
    for envelope_id in ("env_aaaaaaaaaaaaaaaaaaaa", "nonsense", "env_%00"):
        response = client.get(f"{API}/envelopes/{envelope_id}/status", headers=headers)
        assert (response.status_code, response.json()["code"]) == (404, "Envelope.NotFound")


def test_list_pages_in_stable_order_with_an_opaque_cursor(client: Any, tenant: Any, make_key: Any) -> None:
    _, headers = tenant
    ids = [create_envelope(client, headers, title=f"Loan {i}") for i in range(5)]
    _, other = make_key()
    create_envelope(client, {"X-API-Key": other})  # another organisation's: never listed
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = client.get(f"{API}/envelopes", params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids and pages == 3
    default = client.get(f"{API}/envelopes", headers=headers).json()
    assert [i["id"] for i in default["items"]] == ids and default["next_cursor"] is None


def test_list_refuses_a_bad_cursor_and_limit(client: Any, tenant: Any) -> None:
    _, headers = tenant
    for cursor in ("garbage!", "WyJ4IiwieSJd", "bm90IGpzb24"):
        response = client.get(f"{API}/envelopes", params={"cursor": cursor}, headers=headers)
        assert (response.status_code, response.json()["code"]) == (400, "Request.InvalidCursor"), cursor
    for limit in (0, 201):
        response = client.get(f"{API}/envelopes", params={"limit": limit}, headers=headers)
        assert response.status_code == 400 and response.json()["code"] == "Request.Invalid"


def test_list_filters(client: Any, tenant: Any) -> None:
    _, headers = tenant
    before = datetime.now(UTC)
    paper = create_envelope(client, headers, external_id="ext-paper")
    esign = create_envelope(client, headers, kind="esign")
    vaulted = create_envelope(client, headers)
    assert upload(client, headers, vaulted, make_pdf()).status_code == 201
    voided = create_envelope(client, headers)
    assert client.post(f"{API}/envelopes/{voided}/void", json={"reason": "x"}, headers=headers).status_code == 200

    def ids(**params: Any) -> list[str]:
        response = client.get(f"{API}/envelopes", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert ids(kind="esign") == [esign]
    assert ids(status="awaiting_upload") == [paper]
    assert ids(status="voided") == [voided]
    assert ids(vault_state="vaulted") == [vaulted]
    assert ids(external_id="ext-paper") == [paper]
    assert ids(created_after=before.isoformat()) == [paper, esign, vaulted, voided]
    assert ids(created_before=before.isoformat()) == []
    assert set(ids(updated_after=before.isoformat())) == {paper, esign, vaulted, voided}
    assert client.get(f"{API}/envelopes", params={"status": "nonsense"}, headers=headers).status_code == 400
    # Valid RFC 3339 instants beyond Python's UTC range (the contract test's finds: a 500, then a 400 it flagged
    # as a schema-valid request refused): before year 1 and after year 9999 once in UTC, kept as such
    assert ids(created_before="0001-01-01T00:00:00+20:26") == []
    assert ids(created_after="0001-01-01T00:00:00+20:26") == [paper, esign, vaulted, voided]
    assert ids(updated_after="9999-12-31T23:59:59-20:00") == []
    assert set(ids(updated_before="9999-12-31T23:59:59-20:00")) == {paper, esign, vaulted, voided}


# --- status, ETag -----------------------------------------------------------------------------------------


def test_status_is_lightweight_and_shares_the_etag(client: Any, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    response = client.get(f"{API}/envelopes/{envelope_id}/status", headers=headers)
    assert response.status_code == 200
    assert set(response.json()) == {"id", "status", "vault_state", "revision", "updated_at"}
    full = client.get(f"{API}/envelopes/{envelope_id}", headers=headers)
    assert response.headers["etag"] == full.headers["etag"]
    again = client.get(
        f"{API}/envelopes/{envelope_id}/status", headers={**headers, "If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304 and again.content == b""


# --- paper flow: upload, then vault what was staged -------------------------------------------------------


def test_upload_stages_then_empty_vault_in_vaults_the_staged_bytes(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    pdf = make_pdf(pages=2)
    staged = _stage(client, headers, envelope_id, pdf, **{"X-Content-SHA256": hashlib.sha256(pdf).hexdigest()})
    assert staged.status_code == 201, staged.text
    body = staged.json()
    assert body["status"] == "awaiting_upload" and body["vault_state"] == "not_vaulted"
    (doc,) = body["staged_documents"]
    assert doc["sha256"] == hashlib.sha256(pdf).hexdigest()
    assert staged.headers["etag"] == f'"{envelope_id}.2"'
    with runtime.db.read_session() as session:
        row = session.exec(select(StagedDocument).where(StagedDocument.envelope_id == envelope_id)).one()
    assert row.s3_key.startswith("staging/") and row.s3_bucket == runtime.copies.bucket
    assert runtime.copies.head(row.s3_key, row.s3_version_id).lock_mode is None  # staging is not locked

    vaulted = client.post(f"{API}/envelopes/{envelope_id}/vault-in-upload", headers=headers)
    assert vaulted.status_code == 201, vaulted.text
    result = vaulted.json()
    assert result["status"] == "completed" and result["vault_state"] == "vaulted"
    assert [d["sha256"] for d in result["vault"]["documents"]] == [doc["sha256"]]
    assert result["staged_documents"] == []
    with runtime.db.read_session() as session:
        assert session.exec(select(StagedDocument).where(StagedDocument.envelope_id == envelope_id)).first() is None
        vaulted_doc = session.exec(select(VaultedDocument)).one()
    # written afresh by the write-once put: locked, addressed by version, same bytes
    info = runtime.authoritative.head(vaulted_doc.s3_key, vaulted_doc.s3_version_id)
    assert info.lock_mode == "COMPLIANCE" and info.sha256_hex == doc["sha256"]
    assert row.s3_version_id not in runtime.copies.list_versions(row.s3_key)  # the staged object is gone
    assert _events(runtime, envelope_id) == ["envelope.created", "envelope.document_staged", "vault.vaulted_in"]


def test_an_explicit_staged_json_body_vaults_what_was_staged_and_nothing_else_does(client: Any, tenant: Any) -> None:
    """For clients that cannot send an empty body (generated ones): ``{"staged": true}``, and only that."""
    _, headers = tenant
    url = f"{API}/envelopes/{{}}/vault-in-upload"
    refused = create_envelope(client, headers)
    assert _stage(client, headers, refused, make_pdf()).status_code == 201
    for wrong in ({"staged": False}, {"staged": True, "also": 1}, {"staged": "true"}, [True]):
        answer = client.post(url.format(refused), json=wrong, headers=headers)
        assert (answer.status_code, answer.json()["code"]) == (400, "Request.Invalid"), wrong
    assert _get(client, headers, refused)["vault_state"] == "not_vaulted"
    duplicated = client.post(
        url.format(refused),
        content=b'{"staged": true, "staged": true}',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert duplicated.status_code == 400, "a signed-looking body with a repeated key is no body we read"
    vaulted = client.post(url.format(refused), json={"staged": True}, headers=headers)
    assert vaulted.status_code == 201, vaulted.text
    assert vaulted.json()["vault_state"] == "vaulted" and len(vaulted.json()["vault"]["documents"]) == 1


def test_upload_vets_like_vault_in_and_refuses_wrong_states(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    bad = _stage(client, headers, envelope_id, b"not a pdf")
    assert (bad.status_code, bad.json()["code"]) == (400, "Document.NotPdf")
    mismatch = _stage(client, headers, envelope_id, make_pdf(), **{"X-Content-SHA256": "0" * 64})
    assert (mismatch.status_code, mismatch.json()["code"]) == (400, "Document.HashMismatch")
    assert _get(client, headers, envelope_id)["revision"] == 1
    esign = create_envelope(client, headers, kind="esign")
    document = _stage(client, headers, esign, make_pdf())  # an e-sign draft's upload is its document to sign
    assert document.status_code == 201 and document.json()["document"]["pages"] == 2
    assert document.json()["staged_documents"] == []
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    late = _stage(client, headers, envelope_id, make_pdf())
    assert (late.status_code, late.json()["code"]) == (409, "Envelope.InvalidTransition")
    assert late.json()["details"]["status"] == "completed"
    empty = create_envelope(client, headers)
    nothing = client.post(f"{API}/envelopes/{empty}/vault-in-upload", headers=headers)
    assert (nothing.status_code, nothing.json()["code"]) == (409, "Staging.Empty")


def test_expired_staged_documents_are_refused_and_swept(short_lived: Any) -> None:
    runtime, client = short_lived
    with runtime.db.session() as session:
        org = create_organisation(session, "Short")
        _, key = create_api_key(session, org.id, "k", list(SCOPES))
    headers = {"X-API-Key": key}
    envelope_id = create_envelope(client, headers)
    assert _stage(client, headers, envelope_id, make_pdf()).status_code == 201
    time.sleep(1.2)
    refused = client.post(f"{API}/envelopes/{envelope_id}/vault-in-upload", headers=headers)
    assert (refused.status_code, refused.json()["code"]) == (409, "Staging.Expired")
    with runtime.db.read_session() as session:
        row = session.exec(select(StagedDocument).where(StagedDocument.envelope_id == envelope_id)).one()
    assert sweep(runtime.custody(), 60).staged_deleted == 1
    with runtime.db.read_session() as session:
        assert session.get(StagedDocument, row.id) is None
    assert row.s3_version_id not in runtime.copies.list_versions(row.s3_key)
    assert _get(client, headers, envelope_id)["vault_state"] == "not_vaulted"


# --- void --------------------------------------------------------------------------------------------------


def test_void_from_open_states_only(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    for kind in ("paper", "esign"):
        envelope_id = create_envelope(client, headers, kind=kind)
        response = client.post(f"{API}/envelopes/{envelope_id}/void", json={"reason": "withdrawn"}, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "voided"
        assert _events(runtime, envelope_id)[-1] == "envelope.voided"
        again = client.post(f"{API}/envelopes/{envelope_id}/void", json={"reason": "again"}, headers=headers)
        assert (again.status_code, again.json()["code"]) == (409, "Envelope.InvalidTransition")
        assert again.json()["details"]["status"] == "voided"
    voided = envelope_id
    late = upload(client, headers, voided, make_signed_pdf(), flow="signed")
    assert (late.status_code, late.json()["code"]) == (409, "Envelope.NotVaultable")
    vaulted = create_envelope(client, headers)
    assert upload(client, headers, vaulted, make_pdf()).status_code == 201
    refused = client.post(f"{API}/envelopes/{vaulted}/void", json={"reason": "too late"}, headers=headers)
    assert (refused.status_code, refused.json()["code"]) == (409, "Envelope.InvalidTransition")
    assert refused.json()["details"] == {
        "status": "completed",
        "vault_state": "vaulted",
        "requested": "voided",
    }
    blank = client.post(f"{API}/envelopes/{vaulted}/void", json={"reason": "  "}, headers=headers)
    assert (blank.status_code, blank.json()["code"]) == (400, "Envelope.InvalidReason")
    missing = client.post(f"{API}/envelopes/{vaulted}/void", json={}, headers=headers)
    assert missing.status_code == 400 and missing.json()["details"]["errors"][0]["field"] == "reason"


def test_esign_goes_draft_to_completed_on_vault_in_signed(client: Any, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers, kind="esign")
    assert _get(client, headers, envelope_id)["status"] == "draft"
    assert upload(client, headers, envelope_id, make_signed_pdf(), flow="signed").status_code == 201
    shown = _get(client, headers, envelope_id)
    assert (shown["status"], shown["vault_state"]) == ("completed", "vaulted")
    out = client.post(f"{API}/envelopes/{envelope_id}/vault-out", json={"reason": "payoff"}, headers=headers)
    assert out.status_code == 200 and out.json()["vault_state"] == "released"
    assert out.json()["status"] == "completed"


# --- expiry ------------------------------------------------------------------------------------------------


def _expiring(client: Any, headers: dict[str, str], kind: str = "paper") -> tuple[str, datetime]:
    """A new envelope that expires ``EXPIRY_LEAD`` from now: (its id, its expiry)."""
    at = datetime.now(UTC) + EXPIRY_LEAD
    envelope_id = create_envelope(
        client, headers, kind=kind, expires_at=at.isoformat(), external_id=f"x-{uuid.uuid4().hex}"
    )
    return envelope_id, at


def test_expiry_applies_on_read_and_refuses_changes(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envelope_id, at = _expiring(client, headers)
    assert _get(client, headers, envelope_id)["status"] == "awaiting_upload"
    sleep_past(at, 0.2)
    shown = _get(client, headers, envelope_id)
    assert shown["status"] == "expired" and shown["expires_at"]
    assert _events(runtime, envelope_id) == ["envelope.created", "envelope.expired"]
    late = upload(client, headers, envelope_id, make_pdf())
    assert (late.status_code, late.json()["code"]) == (409, "Envelope.NotVaultable")
    void = client.post(f"{API}/envelopes/{envelope_id}/void", json={"reason": "x"}, headers=headers)
    assert (void.status_code, void.json()["details"]["status"]) == (409, "expired")
    assert _events(runtime, envelope_id) == ["envelope.created", "envelope.expired"]


def test_expiry_is_swept_without_a_read_and_spares_vaulted(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    lapsing, _ = _expiring(client, headers, kind="esign")
    kept, at = _expiring(client, headers)
    assert upload(client, headers, kept, make_pdf()).status_code == 201
    sleep_past(at, 0.2)  # the later of the two
    swept = sweep(runtime.custody(), 60)
    assert swept.expired == [lapsing]
    assert _events(runtime, lapsing)[-1] == "envelope.expired"
    assert _get(client, headers, kept)["status"] == "completed"
    listed = client.get(f"{API}/envelopes", params={"status": "expired"}, headers=headers).json()
    assert [i["id"] for i in listed["items"]] == [lapsing]


def test_vault_out_refuses_what_the_ledger_cannot_hold(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    body = {"reason": "transfer", "transferee": {"vault_id": "v-2", "n": 2**60}}
    response = client.post(f"{API}/envelopes/{envelope_id}/vault-out", json=body, headers=headers)
    assert (response.status_code, response.json()["code"]) == (400, "Request.NumberOutOfRange")
    assert response.json()["details"]["field"] == "transferee.n"
    assert "vault.released" not in _events(runtime, envelope_id)
