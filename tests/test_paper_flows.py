"""Both paper flows pass the six conditions, and a failing envelope's check is recorded once per set of failures.

docs/api.md walks a paper envelope through staging (``/upload``) and an empty ``vault-in-upload``; its
``envelope.document_staged`` event must be one condition 4 knows. A compliance or certificate GET on a failing
envelope records ``compliance.check_failed`` only when the failures differ from the last record.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from sqlmodel import col, select

from storage.models import Checkpoint, Envelope, Event, VaultedDocument, VaultRecord
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf, make_signed_pdf
from vault.runtime import Runtime


def _stage(client: Any, headers: dict[str, str], envelope_id: str, pdf: bytes) -> None:
    staged = client.post(
        f"{API}/envelopes/{envelope_id}/upload",
        content=pdf,
        headers={**headers, "Content-Type": "application/pdf", "X-Content-SHA256": hashlib.sha256(pdf).hexdigest()},
    )
    assert staged.status_code == 201, staged.text
    vaulted = client.post(f"{API}/envelopes/{envelope_id}/vault-in-upload", headers=headers)
    assert vaulted.status_code == 201, vaulted.text


def _direct(client: Any, headers: dict[str, str], envelope_id: str, pdf: bytes) -> None:
    assert upload(client, headers, envelope_id, pdf).status_code == 201


def _signed(client: Any, headers: dict[str, str], envelope_id: str, pdf: bytes) -> None:
    """The e-sign kind's manual path: a PDF someone signed elsewhere, vaulted as the authoritative copy."""
    assert upload(client, headers, envelope_id, make_signed_pdf(), flow="signed").status_code == 201


def _types(runtime: Runtime, envelope_id: str) -> list[str]:
    with runtime.db.read_session() as session:
        rows = session.exec(select(Event).where(Event.envelope_id == envelope_id).order_by(col(Event.chain_seq)))
        return [e.event_type for e in rows]


@pytest.mark.parametrize("flow", [_direct, _stage, _signed], ids=["direct", "staged", "esign-signed"])
def test_a_fresh_envelope_passes_all_six_conditions(client: Any, tenant: Any, runtime: Runtime, flow: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers, kind="esign" if flow is _signed else "paper")
    flow(client, headers, envelope_id, make_pdf(pages=2))
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers).status_code == 200
    result = client.get(f"{API}/envelopes/{envelope_id}/compliance?checkpoint=now", headers=headers).json()
    statuses = {c["condition"]: c["status"] for c in result["conditions"]}
    assert result["verdict"] == "pass" and statuses == dict.fromkeys("123456", "pass"), result
    certificate = client.get(f"{API}/envelopes/{envelope_id}/vault/certificate", headers=headers)
    assert certificate.json()["certificate"]["conditions"]["verdict"] == "pass"
    types = _types(runtime, envelope_id)
    assert ("envelope.document_staged" in types) == (flow is _stage)
    assert "compliance.check_failed" not in types


def _checkpoints(runtime: Runtime, org_id: str) -> int:
    with runtime.db.read_session() as session:
        return len(session.exec(select(Checkpoint).where(Checkpoint.org_id == org_id)).all())


def test_a_failing_check_is_recorded_once_per_distinct_set_of_failures(
    client: Any, tenant: Any, runtime: Runtime, s3_admin_client: Any
) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    _stage(client, headers, envelope_id, make_pdf())
    with runtime.db.session() as session:  # condition 2 fails: the row no longer names the assignee of record
        envelope = session.get(Envelope, envelope_id)
        assert envelope is not None
        envelope.secured_party = {"name": "Someone Else"}
        session.add(envelope)
    compliance = f"{API}/envelopes/{envelope_id}/compliance"
    certificate = f"{API}/envelopes/{envelope_id}/vault/certificate"
    for url in (compliance, certificate, compliance, certificate, compliance + "?checkpoint=now"):
        answer = client.get(url, headers=headers)
        assert answer.status_code == 200, answer.text
    assert _types(runtime, envelope_id).count("compliance.check_failed") == 1
    # The record asked for one checkpoint that covers it; after that, reading again signs and records nothing.
    settled = _checkpoints(runtime, org_id)
    for url in (certificate, compliance, certificate):
        assert client.get(url, headers=headers).status_code == 200
    assert _checkpoints(runtime, org_id) == settled
    assert _types(runtime, envelope_id).count("compliance.check_failed") == 1

    with runtime.db.read_session() as session:  # a second fault: another version at the authoritative key
        record = session.exec(select(VaultRecord).where(VaultRecord.envelope_id == envelope_id)).one()
        doc = session.exec(select(VaultedDocument).where(VaultedDocument.record_id == record.id)).one()
    s3_admin_client.put_object(Bucket=doc.s3_bucket, Key=doc.s3_key, Body=b"%PDF-1.7 replaced")
    for _ in range(3):
        assert client.get(compliance, headers=headers).json()["verdict"] == "fail"
    assert _types(runtime, envelope_id).count("compliance.check_failed") == 2
