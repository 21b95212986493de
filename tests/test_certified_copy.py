"""The certified copy: the marked document, its history and the custodian's affidavit, PAdES-signed over the whole
file, and registered as a copy like any other."""

from __future__ import annotations

import hashlib
import io
import subprocess
import time
from pathlib import Path
from typing import Any

from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pypdf import PdfReader

from compliance.conditions.copy_mark import unmarked_pages
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from vault.runtime import Runtime


def _document_signing_root(client: Any) -> asn1_x509.Certificate:
    keys = client.get("/.well-known/evault/keys").json()["keys"]
    pem = next(k["pem"] for k in keys if k["use"] == "document-signing")
    _, _, der = asn1_pem.unarmor(pem.encode())
    return asn1_x509.Certificate.load(der)


def _vaulted(client: Any, headers: dict[str, str], pages: int = 2) -> str:
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf(pages=pages)).status_code == 201
    return envelope_id


def _text(path: Path) -> str:
    return subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout


def test_certified_copy_is_marked_signed_over_the_whole_file_and_registered(
    client: Any, tenant: Any, tmp_path: Path
) -> None:
    org_id, headers = tenant
    envelope_id = _vaulted(client, headers)
    response = client.get(f"{API}/envelopes/{envelope_id}/certified-copy", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    pdf, copy_id = response.content, response.headers["x-evault-copy-id"]
    assert response.headers["x-evault-copy-sha256"] == hashlib.sha256(pdf).hexdigest()

    (embedded,) = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    assert embedded.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    context = ValidationContext(trust_roots=[_document_signing_root(client)], allow_fetching=False)
    status = validate_pdf_signature(embedded, context)
    assert status.intact and status.valid and status.trusted and status.bottom_line, status.summary()
    assert status.coverage.name == "ENTIRE_FILE", status.summary()
    path = tmp_path / "certified.pdf"
    path.write_bytes(pdf)
    pdfsig = subprocess.run(["pdfsig", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert "Signature Validation: Signature is Valid." in pdfsig.stdout, pdfsig.stdout + pdfsig.stderr

    # Every page, the document's and the vault's own, carries the copy's mark in its band.
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) >= 3 and unmarked_pages(pdf, copy_id) == []
    text = _text(path)
    assert text.count("CERTIFIED COPY, not the authoritative copy") == len(reader.pages)
    envelope = client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()
    document = envelope["vault"]["documents"][0]
    assert "History of the record" in text and "Custodian's affidavit" in text
    affidavit = " ".join(text.split())
    for fact in (
        document["sha256"],
        org_id,
        "evault operator",
        "vault.vaulted_in",
        "Transfers of control or location: none",
    ):
        assert fact in affidavit, fact
    assert "has not been released" in affidavit

    # Registered and logged like any copy, with the signed file's hash; the certificate lists it.
    audit = client.get(f"{API}/envelopes/{envelope_id}/audit", headers=headers).json()["events"]
    issued = [e for e in audit if e["type"] == "vault.copy_issued"]
    assert [(e["data"]["copy_id"], e["data"].get("certified")) for e in issued] == [(copy_id, True)]
    assert issued[0]["data"]["sha256"] == hashlib.sha256(pdf).hexdigest()
    certificate = client.get(f"{API}/envelopes/{envelope_id}/vault/certificate", headers=headers).json()
    assert [c["id"] for c in certificate["certificate"]["copies"]] == [copy_id]
    assert certificate["certificate"]["conditions"]["verdict"] == "pass"

    flipped = bytearray(pdf)
    at = pdf.index(b"/Producer")
    flipped[at + 1] = ord("Q")
    (tampered,) = PdfFileReader(io.BytesIO(bytes(flipped))).embedded_signatures
    assert not validate_pdf_signature(tampered, context).intact


def test_nightly_verifier_accepts_the_certified_copy(client: Any, tenant: Any, evault: Any) -> None:
    _, headers = tenant
    envelope_id = _vaulted(client, headers, pages=1)
    assert client.get(f"{API}/envelopes/{envelope_id}/certified-copy", headers=headers).status_code == 200
    code, out, err = evault("verify", "--envelope", envelope_id)
    assert code == 0, out + err


def test_certified_copy_after_vault_out_says_released(client: Any, tenant: Any, tmp_path: Path) -> None:
    _, headers = tenant
    envelope_id = _vaulted(client, headers, pages=1)
    out = client.post(f"{API}/envelopes/{envelope_id}/vault-out", json={"reason": "paper_out"}, headers=headers)
    assert out.status_code == 200, out.text
    response = client.get(f"{API}/envelopes/{envelope_id}/certified-copy", headers=headers)
    assert response.status_code == 200, response.text
    path = tmp_path / "released.pdf"
    path.write_bytes(response.content)
    assert "vault-out) on" in " ".join(_text(path).split()) and "reason paper_out" in " ".join(_text(path).split())


def test_certified_copy_refusals(client: Any, tenant: Any, make_key: Any) -> None:
    _, headers = tenant
    unvaulted = create_envelope(client, headers)
    early = client.get(f"{API}/envelopes/{unvaulted}/certified-copy", headers=headers)
    assert (early.status_code, early.json()["code"]) == (409, "Vault.NotVaulted")
    envelope_id = _vaulted(client, headers, pages=1)
    unknown = client.get(f"{API}/envelopes/{envelope_id}/certified-copy?document_id=doc_nope", headers=headers)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "Document.NotFound")
    _, stranger = make_key()
    other = client.get(f"{API}/envelopes/{envelope_id}/certified-copy", headers={"X-API-Key": stranger})
    assert (other.status_code, other.json()["code"]) == (404, "Envelope.NotFound")
    audit = client.get(f"{API}/envelopes/{envelope_id}/audit", headers=headers).json()["events"]
    assert not [e for e in audit if e["type"] == "vault.copy_issued"]


def test_a_disposed_record_has_no_certified_copy_nor_package(
    client: Any, runtime: Runtime, tenant: Any, evault: Any
) -> None:
    _, headers = tenant
    object.__setattr__(runtime.settings.vault, "retention_days", 2 / 86400)  # what EVAULT_RETENTION_DAYS cannot say
    envelope_id = _vaulted(client, headers, pages=1)
    time.sleep(3)
    code, _, err = evault("dispose", "--due", "--confirm", "--json")
    assert code == 0, err
    for route in ("certified-copy", "evidence"):
        refused = client.get(f"{API}/envelopes/{envelope_id}/{route}", headers=headers)
        assert (refused.status_code, refused.json()["code"]) == (409, "Retention.Disposed"), (route, refused.text)
