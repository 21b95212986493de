"""The signed §9-105 certificate: issued over HTTP, checked offline with only the public key, as JSON and PDF."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pypdf import PdfReader

from compliance.certificates.issuance import sign_certificate
from compliance.certificates.offline_check import verify_certificate
from compliance.checkpoints.policy import CheckpointTrust
from compliance.errors import EvaultError
from compliance.witness.cosignature import CosignatureSigner
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from tests.signed_pdfs import uncovered_tail
from vault.runtime import Runtime

REPO = Path(__file__).resolve().parents[1]


def _vaulted_with_copy(client: Any, headers: dict[str, str]) -> str:
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf(pages=2)).status_code == 201
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers).status_code == 200
    return envelope_id


def _certificate(client: Any, headers: dict[str, str], envelope_id: str) -> dict[str, Any]:
    response = client.get(f"{API}/envelopes/{envelope_id}/vault/certificate", headers=headers)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def _public_pem(client: Any, use: str = "checkpoint") -> str:
    keys = client.get("/.well-known/evault/keys").json()["keys"]
    pem: str = next(k["pem"] for k in keys if k["use"] == use)
    return pem


def _cert_verify(tmp_path: Path, certificate: Any, pem: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`evault cert verify` in an empty directory, with no EVAULT_* variable: only the files it is given."""
    work = tmp_path / "auditor"
    work.mkdir(exist_ok=True)
    (work / "cert.json").write_text(json.dumps(certificate))
    (work / "vault.pem").write_text(pem)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVAULT_")}
    env["PYTHONPATH"] = str(REPO)
    command = [sys.executable, "-m", "vault.cli.main", "cert", "verify", "cert.json", "--public-key", "vault.pem"]
    return subprocess.run(
        [*command, *extra], env=env, cwd=work, capture_output=True, text=True, timeout=120, check=False
    )


def test_certificate_verifies_offline_with_only_the_public_key(client: Any, tenant: Any, tmp_path: Path) -> None:
    _, headers = tenant
    envelope_id = _vaulted_with_copy(client, headers)
    document = _certificate(client, headers, envelope_id)
    body = document["certificate"]
    assert body["format"] == "evault-certificate/v1" and document["signature"]["alg"] == "Ed25519"
    assert body["conditions"]["verdict"] == "pass", json.dumps(body["conditions"], indent=1)
    assert body["assignee_of_record"] == {"name": "First Bank", "id": "bank-1"}
    assert body["custodian"] == {"name": "evault operator", "id": "evault.local"}
    assert body["authoritative_copy"]["documents"][0]["lock_mode"] == "COMPLIANCE"
    assert len(body["copies"]) == 1 and body["vault_out"] is None
    assert body["ledger"]["bundle"]["format"] == "evault-proof-bundle/v2"
    done = _cert_verify(tmp_path, document, _public_pem(client))
    assert done.returncode == 0, done.stderr
    assert "verdict: pass" in done.stdout and "assignee of record: First Bank" in done.stdout


@pytest.mark.parametrize(
    "path",
    [
        ("conditions", "verdict"),
        ("assignee_of_record", "name"),
        ("authoritative_copy", "documents", 0, "sha256"),
        ("custodian", "name"),
        ("issued_at",),
    ],
)
def test_a_flipped_field_makes_the_certificate_invalid(
    client: Any, tenant: Any, tmp_path: Path, path: tuple[Any, ...]
) -> None:
    _, headers = tenant
    document = _certificate(client, headers, _vaulted_with_copy(client, headers))
    tampered = copy.deepcopy(document)
    target = tampered["certificate"]
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = "fail" if path[-1] == "verdict" else "x" + str(target[path[-1]])[1:]
    done = _cert_verify(tmp_path, tampered, _public_pem(client))
    assert done.returncode == 2 and "Certificate.BadSignature" in done.stderr, done.stderr


def test_consistency_is_checked_even_under_a_valid_signature(client: Any, runtime: Runtime, tenant: Any) -> None:
    """A vault that signs a certificate whose claims its own proofs contradict is caught, not trusted."""
    _, headers = tenant
    document = _certificate(client, headers, _vaulted_with_copy(client, headers))
    pem = _public_pem(client).encode()
    lies = {
        "hash": lambda c: c["authoritative_copy"]["documents"][0].update(sha256="0" * 64),
        "assignee": lambda c: c.update(assignee_of_record={"name": "Other Bank"}),
        "verdict": lambda c: c["conditions"].update(verdict="pending"),
        "vault-out": lambda c: c.update(vault_out={"reason": "payoff"}),
        "truncated bundle": lambda c: c["ledger"]["bundle"]["events"].pop(),
    }
    for name, lie in lies.items():
        body = copy.deepcopy(document["certificate"])
        lie(body)
        with pytest.raises(EvaultError) as caught:
            verify_certificate(json.dumps(sign_certificate(body, runtime.key)), pem)
        expected = "Log.Incomplete" if name == "truncated bundle" else "Certificate.Inconsistent"
        assert caught.value.code == expected, (name, caught.value.code)


def test_unknown_key_and_missing_witnesses_are_refused(client: Any, tenant: Any, tmp_path: Path) -> None:
    _, headers = tenant
    document = _certificate(client, headers, _vaulted_with_copy(client, headers))
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = Ed25519PrivateKey.generate().public_key()
    other_pem = other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert _cert_verify(tmp_path, document, other_pem.decode()).returncode == 2
    witness = CosignatureSigner("w.example/witness", Ed25519PrivateKey.generate()).verifier().vkey
    with pytest.raises(EvaultError) as uncosigned:  # a well-formed witness key that never cosigned
        verify_certificate(json.dumps(document), _public_pem(client).encode(), CheckpointTrust((witness,), 1))
    assert uncosigned.value.code == "Witness.QuorumNotMet"
    assert _cert_verify(tmp_path, "not json", _public_pem(client)).returncode == 2
    missing = _cert_verify(tmp_path, document, _public_pem(client), "--tsa-roots", "nowhere.pem")
    assert missing.returncode == 3


def test_certificate_pdf_is_pades_signed_and_validates(client: Any, tenant: Any, tmp_path: Path) -> None:
    _, headers = tenant
    envelope_id = _vaulted_with_copy(client, headers)
    response = client.get(
        f"{API}/envelopes/{envelope_id}/vault/certificate", headers={**headers, "Accept": "application/pdf"}
    )
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    pdf = response.content
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/certificate?format=pdf", headers=headers).content[:5] == (
        b"%PDF-"
    )
    _, _, der = asn1_pem.unarmor(_public_pem(client, "document-signing").encode())
    published = asn1_x509.Certificate.load(der)
    (embedded,) = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    assert embedded.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    status = validate_pdf_signature(embedded, ValidationContext(trust_roots=[published], allow_fetching=False))
    assert status.intact and status.valid and status.trusted and status.bottom_line, status.summary()
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf)
    pdfsig = subprocess.run(["pdfsig", str(path)], capture_output=True, text=True, timeout=60, check=False)
    # Signature valid; a self-signed identity is "issuer unknown" to poppler's NSS store, which is expected.
    assert "Signature Validation: Signature is Valid." in pdfsig.stdout, pdfsig.stdout + pdfsig.stderr
    text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
    assert envelope_id in text and "Verdict: PASS" in text and "First Bank" in text
    flipped = bytearray(pdf)
    at = pdf.index(b"First Bank")
    flipped[at] = ord("X")
    (tampered,) = PdfFileReader(io.BytesIO(bytes(flipped))).embedded_signatures
    assert not validate_pdf_signature(tampered, ValidationContext(trust_roots=[published])).intact


def test_document_signing_key_is_private_and_published(runtime: Runtime, client: Any) -> None:
    key_file = runtime.settings.data_dir / "document-signing-key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert runtime.document_signer is not None
    assert _public_pem(client, "document-signing") == runtime.document_signer.certificate_pem()


def _transferred(client: Any, headers: dict[str, str], pdf: bytes) -> str:
    """Vaulted, one copy issued, then transferred out to another vault."""
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, pdf).status_code == 201
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers).status_code == 200
    out = {"reason": "transfer", "transferee": {"vault_id": "vault.other.example", "name": "Other Vault"}}
    assert client.post(f"{API}/envelopes/{envelope_id}/vault-out", json=out, headers=headers).status_code == 200
    return envelope_id


def test_every_claim_is_compared_with_the_proofs_by_count_and_content(
    client: Any, runtime: Runtime, tenant: Any
) -> None:
    """Re-signed with the vault's own key, a certificate that drops or alters a recorded fact is caught."""
    _, headers = tenant
    document = _certificate(client, headers, _transferred(client, headers, make_pdf()))
    pem = _public_pem(client).encode()
    body = document["certificate"]
    assert verify_certificate(json.dumps(document), pem).verdict == "released"
    assert body["envelope"]["vault_state"] == "released" and len(body["copies"]) == 1
    assert body["vault_out"]["details"]["transferee"] == {"vault_id": "vault.other.example", "name": "Other Vault"}
    lies = {
        "copies emptied": lambda c: c.update(copies=[]),
        "copy twice": lambda c: c["copies"].append(c["copies"][0]),
        "copy hash": lambda c: c["copies"][0].update(sha256="0" * 64),
        "copy time": lambda c: c["copies"][0].update(issued_at="2020-01-01T00:00:00Z"),
        "no vault-out": lambda c: c.update(vault_out=None),
        "transferee": lambda c: c["vault_out"]["details"]["transferee"].update(vault_id="vault.thief.example"),
        "vault-out date": lambda c: c["vault_out"].update(at="2020-01-01T00:00:00Z"),
        "state": lambda c: c["envelope"].update(vault_state="vaulted"),
        "title": lambda c: c["envelope"].update(title="Another loan"),
        "history emptied": lambda c: c.update(assignee_history=[]),
        "filename": lambda c: c["authoritative_copy"]["documents"][0].update(filename="other.pdf"),
        "documents emptied": lambda c: c["authoritative_copy"].update(documents=[]),
        "retention": lambda c: c["authoritative_copy"].update(retain_until="2099-01-01T00:00:00Z"),
        "signatures emptied": lambda c: c.update(signatures=[]),
        "controller": lambda c: c["control"].update(controller="org_" + "x" * 20),
        "a transfer": lambda c: c["transfers"].append({"id": "tr_" + "x" * 20}),
        "released yet pass": lambda c: (
            c["conditions"]["conditions"][2].update(status="pass"),
            c["conditions"].update(verdict="pass"),
        ),
    }
    for name, lie in lies.items():
        changed = copy.deepcopy(body)
        lie(changed)
        with pytest.raises(EvaultError) as caught:
            verify_certificate(json.dumps(sign_certificate(changed, runtime.key)), pem)
        assert caught.value.code == "Certificate.Inconsistent", (name, caught.value.code)


def test_certificate_pdf_embeds_the_exact_json_and_shows_the_vault_out(
    client: Any, tenant: Any, tmp_path: Path
) -> None:
    _, headers = tenant
    envelope_id = _transferred(client, headers, uncovered_tail())
    json_body = _certificate(client, headers, envelope_id)["certificate"]
    pdf = client.get(f"{API}/envelopes/{envelope_id}/vault/certificate?format=pdf", headers=headers).content
    reader = PdfReader(io.BytesIO(pdf))
    (embedded,) = reader.attachments["certificate.json"]
    (associated,) = reader.trailer["/Root"]["/AF"]
    assert associated.get_object()["/AFRelationship"] == "/Data"
    assert associated.get_object()["/EF"]["/F"].get_object().get_data() == embedded
    document = json.loads(embedded)
    assert embedded == rfc8785.dumps(document)  # the exact signed form, not a re-rendering
    assert verify_certificate(embedded, _public_pem(client).encode()).verdict == "released"
    strip = ("issued_at",)
    assert {k: v for k, v in document["certificate"].items() if k not in strip} == {
        k: v for k, v in json_body.items() if k not in strip
    }
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(["pdftotext", "-raw", str(path), "-"], capture_output=True, text=True, check=True).stdout
    assert hashlib.sha256(embedded).hexdigest() in text
    released = document["certificate"]["vault_out"]
    assert f"Vault-out: transfer on {released['at']}" in text and "Transferee: Other Vault vault.other.example" in text
    assert "anomalies: Signature1:untrusted_signer, uncovered_changes_after_last_signature" in text, text
    (signature,) = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    _, _, der = asn1_pem.unarmor(_public_pem(client, "document-signing").encode())
    roots = [asn1_x509.Certificate.load(der)]
    status = validate_pdf_signature(signature, ValidationContext(trust_roots=roots, allow_fetching=False))
    assert status.bottom_line and status.coverage.name == "ENTIRE_FILE", status.summary()
