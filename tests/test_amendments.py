"""Amendments and paper-in attestations: recorded beside the authoritative copy, never in it.

An amendment's PDFs are vaulted write-once in the WORM bucket under their own keys (COMPLIANCE-locked, the
stored checksum the recorded SHA-256); the authoritative bytes and versions stay as they were; the certificate
lists the amendments and the attestations as the log states them, and both offline checks accept it (and
refuse one that lies). Every refusal changes nothing: the organisation's log does not grow.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from compliance.certificates.issuance import sign_certificate
from compliance.certificates.offline_check import CertificateInvalid, verify_certificate
from compliance.ledger.events import log_size
from compliance.verifier import Options, verify
from storage.models import Event, VaultedDocument, VaultRecord
from tests import outside_verifier, signed_pdfs
from tests.helpers import API, create_envelope, together, upload
from tests.pdf_factory import make_pdf
from vault.runtime import Runtime


def _vaulted(client: Any, headers: dict[str, str], kind: str = "paper") -> str:
    envelope_id = create_envelope(client, headers, kind=kind)
    pdf = signed_pdfs.valid() if kind == "esign" else make_pdf(text=f"Loan {envelope_id}")
    assert upload(client, headers, envelope_id, pdf, flow="signed" if kind == "esign" else "upload").status_code == 201
    return envelope_id


def _size(runtime: Runtime, org_id: str) -> int:
    with runtime.db.read_session() as session:
        return log_size(session, org_id)


def _entries(runtime: Runtime, envelope_id: str, event_type: str) -> list[bytes]:
    with runtime.db.read_session() as session:
        rows = session.exec(select(Event).where(Event.envelope_id == envelope_id, Event.event_type == event_type))
        return [e.entry for e in rows]


def _authoritative(runtime: Runtime, envelope_id: str) -> list[tuple[str, str, str]]:
    with runtime.db.read_session() as session:
        record = session.exec(select(VaultRecord).where(VaultRecord.envelope_id == envelope_id)).one()
        docs = session.exec(select(VaultedDocument).where(VaultedDocument.record_id == record.id))
        return [(d.s3_key, d.s3_version_id, d.sha256) for d in docs]


def _pem(client: Any) -> bytes:
    keys = client.get("/.well-known/evault/keys").json()["keys"]
    return str(next(k["pem"] for k in keys if k["use"] == "checkpoint")).encode()


def _certified(client: Any, headers: dict[str, str], envelope_id: str) -> dict[str, Any]:
    response = client.get(f"{API}/envelopes/{envelope_id}/vault/certificate", headers=headers)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    verify_certificate(json.dumps(document), _pem(client))
    outside_verifier.verify_certificate(document, _pem(client))
    return document


def _page_text(client: Any, headers: dict[str, str], envelope_id: str, tmp_path: Path) -> str:
    """The certificate page as a reader sees it (poppler's pdftotext)."""
    pdf = client.get(f"{API}/envelopes/{envelope_id}/vault/certificate?format=pdf", headers=headers)
    assert pdf.status_code == 200, pdf.text
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf.content)
    return subprocess.run(["pdftotext", "-raw", str(path), "-"], capture_output=True, text=True, check=True).stdout


def _refused_lie(runtime: Runtime, client: Any, document: dict[str, Any], field: str, lie: Any) -> None:
    """The certificate re-signed by the vault's own key with one claim the log does not make: refused."""
    lied = copy.deepcopy(document["certificate"])
    lied[field] = lie
    with pytest.raises(CertificateInvalid):
        verify_certificate(json.dumps(sign_certificate(lied, runtime.key)), _pem(client))


def test_amendments_are_vaulted_beside_the_original_and_certified(
    client: Any, runtime: Runtime, tenant: Any, s3_admin_client: Any, tmp_path: Path
) -> None:
    org_id, headers = tenant
    envelope_id = _vaulted(client, headers)
    original = _authoritative(runtime, envelope_id)
    url = f"{API}/envelopes/{envelope_id}/amendments"

    plain = client.post(
        url, json={"type": "modification", "data": {"rate": "5.25%", "term_months": 300}}, headers=headers
    )
    assert plain.status_code == 201, plain.text
    assert [a["type"] for a in plain.json()["amendments"]] == ["modification"]

    signed = signed_pdfs.valid()
    files = [
        ("metadata", (None, json.dumps({"type": "assumption", "data": {"assumed_by": "New Borrower LLC"}}), None)),
        ("document", ("assumption.pdf", signed, "application/pdf")),
    ]
    with_pdf = client.post(url, files=files, headers=headers)
    assert with_pdf.status_code == 201, with_pdf.text

    listed = client.get(url, headers=headers)
    assert listed.status_code == 200, listed.text
    first, second = listed.json()["amendments"]
    assert (first["position"], first["documents"]) == (0, [])
    assert second["type"] == "assumption" and second["data"] == {"assumed_by": "New Borrower LLC"}
    (doc,) = second["documents"]
    assert doc["sha256"] == hashlib.sha256(signed).hexdigest() and doc["signatures"]["signatures"]

    # Written once, locked, beside the original; the original's bytes and versions are untouched.
    (entry,) = [json.loads(e)["data"] for e in _entries(runtime, envelope_id, "vault.amended") if b"assumption" in e]
    (stored,) = entry["documents"]
    assert stored["key"].startswith(f"amendments/{org_id}/{envelope_id}/{second['id']}/")
    bucket = runtime.authoritative.bucket
    head = s3_admin_client.head_object(Bucket=bucket, Key=stored["key"], VersionId=stored["version_id"])
    assert head["ObjectLockMode"] == "COMPLIANCE"
    body = s3_admin_client.get_object(Bucket=bucket, Key=stored["key"], VersionId=stored["version_id"])["Body"]
    assert hashlib.sha256(body.read()).hexdigest() == doc["sha256"]
    assert _authoritative(runtime, envelope_id) == original

    document = _certified(client, headers, envelope_id)
    claimed = document["certificate"]["amendments"]
    assert [(a["id"], a["type"]) for a in claimed] == [(first["id"], "modification"), (second["id"], "assumption")]
    assert claimed[1]["documents"][0]["sha256"] == doc["sha256"]
    assert document["certificate"]["conditions"]["verdict"] == "pass"
    _refused_lie(runtime, client, document, "amendments", claimed[:1])
    text = _page_text(client, headers, envelope_id, tmp_path)
    assert "Amendments: 2" in text and f"assumption {second['id']}" in text, text
    with pytest.raises(outside_verifier.Rejected):
        lied = copy.deepcopy(document["certificate"])
        lied["amendments"] = []
        outside_verifier.verify_certificate(sign_certificate(lied, runtime.key), _pem(client))


def test_amendment_refusals_change_nothing(client: Any, runtime: Runtime, tenant: Any) -> None:
    org_id, headers = tenant
    vaulted = _vaulted(client, headers)
    unvaulted = create_envelope(client, headers)
    released = _vaulted(client, headers)
    assert client.post(f"{API}/envelopes/{released}/vault-out", json={"reason": "payoff"}, headers=headers).is_success
    good = {"type": "modification", "data": {"rate": "4%"}}
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        (vaulted, {"type": "refinance", "data": {}}, 400, "Amendment.InvalidType"),
        (vaulted, {"data": {}}, 400, "Amendment.InvalidType"),
        (vaulted, {"type": "modification", "data": "rate 4%"}, 400, "Request.InvalidField"),
        (vaulted, {"type": "modification", "data": {"x": "y" * 20000}}, 400, "Request.FieldTooLong"),
        (vaulted, {"type": "modification", "data": {"n": 2**60}}, 400, "Request.NumberOutOfRange"),
        (unvaulted, good, 409, "Vault.NotVaulted"),
        (released, good, 409, "Vault.AlreadyReleased"),
        ("env_" + "z" * 20, good, 404, "Envelope.NotFound"),
    ]
    before = _size(runtime, org_id)
    for envelope_id, body, status, code in cases:
        answer = client.post(f"{API}/envelopes/{envelope_id}/amendments", json=body, headers=headers)
        assert (answer.status_code, answer.json()["code"]) == (status, code), (body, answer.text)
    not_pdf = [
        ("metadata", (None, json.dumps(good), None)),
        ("document", ("a.pdf", b"%PDF-1.4 not really", "application/pdf")),
    ]
    answer = client.post(f"{API}/envelopes/{vaulted}/amendments", files=not_pdf, headers=headers)
    assert answer.status_code == 400 and answer.json()["code"].startswith("Document."), answer.text
    no_metadata = [("document", ("a.pdf", make_pdf(), "application/pdf"))]
    answer = client.post(f"{API}/envelopes/{vaulted}/amendments", files=no_metadata, headers=headers)
    assert (answer.status_code, answer.json()["code"]) == (400, "Request.Invalid"), answer.text
    answer = client.post(
        f"{API}/envelopes/{vaulted}/amendments", content=b"rate=4", headers={**headers, "Content-Type": "text/plain"}
    )
    assert (answer.status_code, answer.json()["code"]) == (400, "Request.UnsupportedMediaType"), answer.text
    assert _size(runtime, org_id) == before
    assert client.get(f"{API}/envelopes/{vaulted}/amendments", headers=headers).json()["amendments"] == []
    assert client.get(f"{API}/envelopes/{unvaulted}/amendments", headers=headers).json()["amendments"] == []


def test_an_amendment_racing_a_vault_out_is_recorded_only_before_it(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    for _ in range(3):
        envelope_id = _vaulted(client, headers)
        files = [
            ("metadata", (None, json.dumps({"type": "modification", "data": {"rate": "3%"}}), None)),
            ("document", ("m.pdf", make_pdf(text="Modification"), "application/pdf")),
        ]
        amended, released = together(
            lambda envelope_id=envelope_id, files=files: client.post(
                f"{API}/envelopes/{envelope_id}/amendments", files=files, headers=headers
            ),
            lambda envelope_id=envelope_id: client.post(
                f"{API}/envelopes/{envelope_id}/vault-out", json={"reason": "payoff"}, headers=headers
            ),
        )
        assert released.status_code == 200, released.text
        assert amended.status_code in (201, 409), amended.text
        entries = _entries(runtime, envelope_id, "vault.amended")
        if amended.status_code == 409:
            assert amended.json()["code"] == "Vault.AlreadyReleased" and entries == []
        else:
            assert len(entries) == 1
            with runtime.db.read_session() as session:
                released_event = session.exec(
                    select(Event).where(Event.envelope_id == envelope_id, Event.event_type == "vault.released")
                ).one()
                amended_event = session.exec(
                    select(Event).where(Event.envelope_id == envelope_id, Event.event_type == "vault.amended")
                ).one()
            assert amended_event.chain_seq is not None and released_event.chain_seq is not None
            assert amended_event.chain_seq < released_event.chain_seq
        _certified(client, headers, envelope_id)


def test_paper_in_attestation_is_custody_evidence_with_the_attester_committed(
    client: Any, runtime: Runtime, tenant: Any, tmp_path: Path
) -> None:
    _, headers = tenant
    envelope_id = _vaulted(client, headers)
    url = f"{API}/envelopes/{envelope_id}/paper-in-attestation"
    held_at = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).replace(microsecond=0).isoformat()
    answer = client.post(
        url,
        json={"original": "held", "at": held_at, "attested_by": "Carol Custodian", "location": "Vault room 3"},
        headers=headers,
    )
    assert answer.status_code == 201, answer.text
    (shown,) = answer.json()["paper_in_attestations"]
    assert shown["original"] == "held" and shown["location"] == "Vault room 3"
    assert shown["attested_by"]["name"] == "Carol Custodian" and shown["attested_by"]["state"] == "shown"
    destroyed = client.post(
        url, json={"original": "destroyed", "at": held_at, "attested_by": "Dan Destroyer"}, headers=headers
    )
    assert destroyed.status_code == 201, destroyed.text

    entries = _entries(runtime, envelope_id, "vault.paper_in_attested")
    assert len(entries) == 2 and not any(b"Carol" in e or b"Dan" in e for e in entries)  # only commitments
    (committed,) = json.loads(entries[0])["data"]["attested_by"]
    assert committed["subject"] == shown["attested_by"]["subject"] and len(committed["commitment"]) == 64

    document = _certified(client, headers, envelope_id)
    claimed = document["certificate"]["paper_in_attestations"]
    assert [c["original"] for c in claimed] == ["held", "destroyed"]
    assert claimed[0]["attested_by"] == [committed] and "Carol" not in json.dumps(document)
    _refused_lie(runtime, client, document, "paper_in_attestations", claimed[1:])
    text = _page_text(client, headers, envelope_id, tmp_path)
    assert f"Paper original held at {claimed[0]['at']}" in text and "Carol" not in text, text


def test_paper_in_attestation_refusals_change_nothing(client: Any, runtime: Runtime, tenant: Any) -> None:
    org_id, headers = tenant
    paper = _vaulted(client, headers)
    esign = _vaulted(client, headers, kind="esign")
    unvaulted = create_envelope(client, headers)
    released = _vaulted(client, headers)
    assert client.post(f"{API}/envelopes/{released}/vault-out", json={"reason": "payoff"}, headers=headers).is_success
    past = "2026-01-02T03:04:05+00:00"
    good = {"original": "held", "at": past, "attested_by": "Carol"}
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat()
    cases: list[tuple[str, dict[str, Any], int, str | None]] = [
        (esign, good, 409, "PaperIn.NotPaper"),
        (unvaulted, good, 409, "Vault.NotVaulted"),
        (released, good, 409, "Vault.AlreadyReleased"),
        (paper, {**good, "original": "lost"}, 400, "PaperIn.InvalidOriginal"),
        (paper, {**good, "at": "2026-01-02T03:04:05"}, 400, "PaperIn.InvalidTime"),
        (paper, {**good, "at": future}, 400, "PaperIn.InvalidTime"),
        (paper, {**good, "attested_by": "   "}, 400, "PaperIn.AttesterRequired"),
        (paper, {**good, "attested_by": "Carol\u202e"}, 400, "Request.InvalidCharacter"),
        (paper, {"original": "held", "at": past}, 400, None),  # the body's own check: attested_by missing
    ]
    before = _size(runtime, org_id)
    for envelope_id, body, status, code in cases:
        answer = client.post(f"{API}/envelopes/{envelope_id}/paper-in-attestation", json=body, headers=headers)
        assert answer.status_code == status, (body, answer.text)
        if code is not None:
            assert answer.json()["code"] == code, answer.text
    assert _size(runtime, org_id) == before
    assert client.get(f"{API}/envelopes/{paper}", headers=headers).json()["paper_in_attestations"] == []


def test_retention_and_legal_hold_follow_the_record_onto_its_amendments(
    client: Any, runtime: Runtime, tenant: Any, s3_admin_client: Any
) -> None:
    _, headers = tenant
    envelope_id = _vaulted(client, headers)
    files = [
        ("metadata", (None, json.dumps({"type": "modification", "data": {"rate": "6%"}}), None)),
        ("document", ("m.pdf", make_pdf(text="Modification"), "application/pdf")),
    ]
    assert client.post(f"{API}/envelopes/{envelope_id}/amendments", files=files, headers=headers).status_code == 201
    (entry,) = [json.loads(e)["data"] for e in _entries(runtime, envelope_id, "vault.amended")]
    (stored,) = entry["documents"]
    where = {"Bucket": runtime.authoritative.bucket, "Key": stored["key"], "VersionId": stored["version_id"]}
    current = client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()["vault"]["retain_until"]
    assert s3_admin_client.get_object_retention(**where)["Retention"]["RetainUntilDate"] == dt.datetime.fromisoformat(
        current
    )

    later = dt.datetime.fromisoformat(current) + dt.timedelta(days=30)
    extended = client.post(
        f"{API}/envelopes/{envelope_id}/retention", json={"retain_until": later.isoformat()}, headers=headers
    )
    assert extended.status_code == 200, extended.text
    assert s3_admin_client.get_object_retention(**where)["Retention"]["RetainUntilDate"] == later

    url = f"{API}/envelopes/{envelope_id}/legal-hold"
    assert client.post(url, json={"reason": "litigation"}, headers=headers).status_code == 200
    assert s3_admin_client.get_object_legal_hold(**where)["LegalHold"]["Status"] == "ON"
    assert client.request("DELETE", url, json={"reason": "settled"}, headers=headers).status_code == 200
    assert s3_admin_client.get_object_legal_hold(**where)["LegalHold"]["Status"] == "OFF"

    # Amendments and attestations leave the nightly verifier nothing to report.
    attested = client.post(
        f"{API}/envelopes/{envelope_id}/paper-in-attestation",
        json={"original": "destroyed", "at": "2026-01-02T03:04:05Z", "attested_by": "Dan"},
        headers=headers,
    )
    assert attested.status_code == 201, attested.text
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200
    report = verify(runtime.sources(), options=Options(concurrency=2))
    assert report.clean, report.findings
