"""Authoritative and copy URLs, vault-out, and what each leaves on the record."""

from __future__ import annotations

import hashlib
import io
import time
from typing import Any

import httpx
from pypdf import PdfReader
from sqlmodel import select

from storage.models import CopyRecord, Event
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from vault.runtime import Runtime


def _vaulted(client: Any, headers: dict[str, str], pdf: bytes) -> str:
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, pdf).status_code == 201
    return envelope_id


def _event_types(runtime: Runtime, envelope_id: str) -> list[str]:
    with runtime.db.session() as session:
        events = session.exec(select(Event).where(Event.envelope_id == envelope_id).order_by(Event.chain_seq)).all()
    return [e.event_type for e in events]


def test_authoritative_url_serves_the_exact_version_and_is_recorded(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    pdf = make_pdf(pages=2)
    envelope_id = _vaulted(client, headers, pdf)
    response = client.get(f"{API}/envelopes/{envelope_id}/vault/signed-url", headers=headers)
    assert response.status_code == 200, response.text
    (doc,) = response.json()["documents"]
    assert doc["authoritative"] is True and doc["sha256"] == hashlib.sha256(pdf).hexdigest()
    assert "versionId=" in doc["url"]
    assert httpx.get(doc["url"]).content == pdf
    assert _event_types(runtime, envelope_id)[-1] == "vault.retrieval_issued"


def test_presigned_url_expires(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = _vaulted(client, headers, make_pdf())
    doc = runtime.settings.vault
    object.__setattr__(doc, "url_expiry_seconds", 1)
    url = client.get(f"{API}/envelopes/{envelope_id}/vault/signed-url", headers=headers).json()["documents"][0]["url"]
    time.sleep(2.1)
    assert httpx.get(url).status_code == 403


def test_copy_is_marked_on_every_page_registered_and_never_the_original(
    client: Any, runtime: Runtime, tenant: Any
) -> None:
    _, headers = tenant
    pdf = make_pdf(pages=4)
    source_sha = hashlib.sha256(pdf).hexdigest()
    envelope_id = _vaulted(client, headers, pdf)
    response = client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers)
    assert response.status_code == 200, response.text
    (copy,) = response.json()["copies"]
    assert copy["authoritative"] is False and copy["id"].startswith("cp_")
    data = httpx.get(copy["url"]).content
    assert hashlib.sha256(data).hexdigest() == copy["sha256"] != source_sha
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) == 4
    for page in reader.pages:
        text = page.extract_text()
        assert "NON-AUTHORITATIVE COPY" in text and copy["id"] in text and source_sha in text
    assert runtime.settings.s3.copies_bucket in copy["url"]
    with runtime.db.session() as session:
        record = session.get(CopyRecord, copy["id"])
    assert record is not None and record.sha256 == copy["sha256"] and record.source_sha256 == source_sha
    second = client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers).json()["copies"][0]
    assert second["id"] != copy["id"]
    assert _event_types(runtime, envelope_id).count("vault.copy_issued") == 2


def test_vault_out_blocks_authoritative_retrieval_and_keeps_the_lock(
    client: Any, runtime: Runtime, tenant: Any
) -> None:
    _, headers = tenant
    envelope_id = _vaulted(client, headers, make_pdf())
    url = f"{API}/envelopes/{envelope_id}/vault-out"
    missing = client.post(url, json={"reason": "transfer"}, headers=headers)
    assert (missing.status_code, missing.json()["code"]) == (400, "VaultOut.TransfereeRequired")
    bad_reason = client.post(url, json={"reason": "lost it"}, headers=headers)
    assert (bad_reason.status_code, bad_reason.json()["code"]) == (400, "VaultOut.InvalidReason")
    released = client.post(
        url, json={"reason": "transfer", "transferee": {"vault_id": "vault.other.example"}}, headers=headers
    )
    assert released.status_code == 200, released.text
    view = released.json()["vault"]
    assert view["state"] == "released" and view["released"]["reason"] == "transfer"
    assert view["released"]["details"]["transferee"]["vault_id"] == "vault.other.example"
    blocked = client.get(f"{API}/envelopes/{envelope_id}/vault/signed-url", headers=headers)
    assert (blocked.status_code, blocked.json()["code"]) == (409, "Vault.Released")
    again = client.post(url, json={"reason": "payoff"}, headers=headers)
    assert (again.status_code, again.json()["code"]) == (409, "Vault.AlreadyReleased")
    doc = client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()["vault"]["documents"][0]
    key = runtime.s3_client.list_object_versions(Bucket=runtime.authoritative.bucket)["Versions"][0]["Key"]
    head = runtime.s3_client.head_object(Bucket=runtime.authoritative.bucket, Key=key, VersionId=doc["version_id"])
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert _event_types(runtime, envelope_id)[-1] == "vault.released"


def test_retrieval_before_vault_in_is_a_conflict(client: Any, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    for path in ("vault/signed-url", "vault/copy/signed-url"):
        response = client.get(f"{API}/envelopes/{envelope_id}/{path}", headers=headers)
        assert (response.status_code, response.json()["code"]) == (409, "Vault.NotVaulted")
