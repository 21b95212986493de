"""Signatures inside the PDF: graded by pyHanko, refused when broken, kept with the record when accepted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import pem
from litestar.testing import TestClient
from sqlmodel import select

from compliance.signatures.pdf_validation import load_trust_roots, validate_signatures
from storage.models import VaultRecord
from storage.settings import PdfSettings, Settings
from tests import signed_pdfs
from tests.helpers import create_envelope, upload
from tests.pdf_factory import make_signed_pdf, make_signing_pki, signing_pki
from vault.api.app import create_app
from vault.pdf_inspect import inspect_pdf
from vault.runtime import Runtime, open_runtime
from vault.tenancy import SCOPES, create_api_key, create_organisation


def _roots_pem() -> bytes:
    signer_root = pem.armor("CERTIFICATE", signing_pki()[2].dump())
    return signer_root + signed_pdfs.tsa_pki().root_pem


# name -> (acceptable, clean): the verdicts the issue expects; the three "defensible either way" shapes are
# accepted only where pyHanko's difference analysis permits them, and are never clean.
EXPECTED: dict[str, tuple[bool, bool]] = {
    "valid": (True, True),
    "certified": (True, True),
    "signed_twice": (True, True),
    "with_signature_timestamp": (True, True),
    "with_document_timestamp": (True, True),
    "tampered_in_signed_range": (False, False),
    "uncovered_tail": (True, False),
    "appearance_overridden": (False, False),
    "trailer_changed": (True, False),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_shape_gets_its_graded_verdict(name: str) -> None:
    result = validate_signatures(getattr(signed_pdfs, name)(), load_trust_roots(_roots_pem()))
    assert (result.acceptable, result.clean) == EXPECTED[name], result.as_json()
    assert result.verdicts and all(v.signer for v in result.verdicts if not v.error)
    if not result.clean:
        assert result.anomalies, "a file that is not clean must name its anomaly"


@pytest.mark.once
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_vetting_worker_grades_each_shape_as_validating_it_here_does(name: str) -> None:
    """Vault-in takes the grade from its vetting, made in the worker from the reader that vetted the file."""
    data, roots = getattr(signed_pdfs, name)(), load_trust_roots(_roots_pem())
    facts = inspect_pdf(data, PdfSettings(worker_nice=0), None, roots)  # worker_nice: see conftest's vault_env
    assert facts.signatures is not None and facts.signature_count == len(facts.signatures.verdicts)
    assert facts.signatures.as_json() == validate_signatures(data, roots).as_json()


def test_uncovered_tail_and_illegal_update_are_named() -> None:
    roots = load_trust_roots(_roots_pem())
    tail = validate_signatures(signed_pdfs.uncovered_tail(), roots)
    assert "uncovered_changes_after_last_signature" in tail.anomalies
    overridden = validate_signatures(signed_pdfs.appearance_overridden(), roots)
    (verdict,) = overridden.verdicts
    assert verdict.intact and verdict.valid, "pyHanko keeps intact/valid true on an illegal update"
    assert verdict.modification_level == "OTHER" and not verdict.acceptable


def test_without_trust_roots_a_sound_signature_is_accepted_as_untrusted() -> None:
    result = validate_signatures(signed_pdfs.valid(), [])
    (verdict,) = result.verdicts
    assert result.acceptable and not result.clean and not verdict.trusted
    assert result.anomalies == ["Signature1:untrusted_signer"]


def test_damaged_signature_container_is_a_verdict_not_a_crash() -> None:
    data = signed_pdfs.valid()
    start = data.index(b"/Contents <") + len(b"/Contents <")
    damaged = data[:start] + b"00" * 40 + data[start + 80 :]
    (verdict,) = validate_signatures(damaged, load_trust_roots(_roots_pem())).verdicts
    assert not verdict.acceptable and (verdict.error or not verdict.intact)


@pytest.fixture
def trusting_runtime(vault_env: dict[str, str], tmp_path: Path) -> Iterator[Runtime]:
    roots = tmp_path / "signer-roots.pem"
    roots.write_bytes(_roots_pem())
    env = {**vault_env, "EVAULT_SIGNER_TRUST_ROOTS": str(roots), "EVAULT_REQUIRE_TRUSTED_SIGNERS": "true"}
    opened = open_runtime(Settings.from_env(env))
    try:
        yield opened
    finally:
        opened.close()


def _client_for(runtime: Runtime) -> tuple[TestClient[Any], dict[str, str]]:
    with runtime.db.session() as session:
        org = create_organisation(session, "Signers")
        _, raw = create_api_key(session, org.id, "k", list(SCOPES))
    return TestClient(create_app(runtime)), {"X-API-Key": raw}


def _records(runtime: Runtime) -> list[VaultRecord]:
    with runtime.db.read_session() as session:
        return list(session.exec(select(VaultRecord)))


@pytest.mark.parametrize("name", ["tampered_in_signed_range", "appearance_overridden"])
def test_vault_in_signed_refuses_broken_signatures_and_writes_nothing(
    client: Any, runtime: Runtime, tenant: Any, name: str
) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers, kind="esign")
    response = upload(client, headers, envelope_id, getattr(signed_pdfs, name)(), flow="signed")
    assert (response.status_code, response.json()["code"]) == (400, "Document.SignatureInvalid"), response.text
    assert response.json()["details"]["signatures"]["acceptable"] is False
    assert _records(runtime) == []
    listed = runtime.s3_client.list_object_versions(Bucket=runtime.authoritative.bucket, Prefix="authoritative/")
    assert listed.get("Versions", []) == []


def test_graded_result_is_kept_with_the_record(trusting_runtime: Runtime) -> None:
    client, headers = _client_for(trusting_runtime)
    with client:
        envelope_id = create_envelope(client, headers, kind="esign")
        response = upload(client, headers, envelope_id, signed_pdfs.uncovered_tail(), flow="signed")
        assert response.status_code == 201, response.text
        (doc,) = response.json()["vault"]["documents"]
        graded = doc["signatures"]
        assert graded["acceptable"] is True and graded["clean"] is False
        assert graded["anomalies"] == ["uncovered_changes_after_last_signature"]
        (signature,) = graded["signatures"]
        assert signature["trusted"] is True and signature["signer"] == "Common Name: Evault Test Signer"
        assert {"coverage", "modification_level", "timestamp", "bottom_line", "signing_time"} <= set(signature)


def test_required_trust_refuses_a_foreign_signer(trusting_runtime: Runtime) -> None:
    foreign = make_signed_pdf(pki=make_signing_pki("Someone Else"))
    client, headers = _client_for(trusting_runtime)
    with client:
        envelope_id = create_envelope(client, headers, kind="esign")
        response = upload(client, headers, envelope_id, foreign, flow="signed")
    assert (response.status_code, response.json()["code"]) == (400, "Document.SignerUntrusted"), response.text
    assert _records(trusting_runtime) == []
