"""Configured witnesses and TSA: every checkpoint the vault signs is cosigned and timestamped, for real."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from litestar.testing import TestClient
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from compliance.checkpoints.timestamping import verify_timestamp
from compliance.witness.cosignature import CosignatureVerifier, verify_cosignature
from compliance.witness.http_app import build_witness
from storage.keys import timestamp_key
from storage.settings import Settings
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from tests.test_timestamping import Pki, other_pki, pki, tsa_url  # noqa: F401  (fixtures)
from tests.test_witness import Served
from vault.api.app import create_app
from vault.runtime import Runtime, open_runtime
from vault.tenancy import bootstrap


@pytest.fixture
def witnessed_vault(vault_env: dict[str, str], tmp_path: Path, tsa_url: str, pki: Pki) -> Iterator[tuple[Runtime, Any]]:  # noqa: F811
    # The vault's key decides its vkey, so make the key first, then the witness that trusts it.
    first = open_runtime(Settings.from_env(vault_env))
    origin_prefix, vkey = first.settings.vault.log_origin, first.key.note_verifier.vkey
    with first.db.session() as session:
        created = bootstrap(session)
    assert created is not None
    org, raw = created
    first.close()
    witness = build_witness(tmp_path / "w", tmp_path / "w.pem", [f"{origin_prefix}/{org.id} {vkey}"], name="w.test")
    (tmp_path / "tsa-roots.pem").write_bytes(pki.root_pem)
    with Served(witness) as server:
        env = {
            **vault_env,
            "EVAULT_WITNESSES": f"{server.url} {witness.signer.verifier().vkey}",
            "EVAULT_TSA_URL": f"{tsa_url}/tsa",
            "EVAULT_TSA_ROOTS": str(tmp_path / "tsa-roots.pem"),
        }
        opened = open_runtime(Settings.from_env(env))
        try:
            yield opened, (org.id, raw, witness)
        finally:
            opened.close()


def test_checkpoints_are_cosigned_and_timestamped(witnessed_vault: tuple[Runtime, Any], pki: Pki) -> None:  # noqa: F811
    runtime, (org_id, raw, witness) = witnessed_vault
    headers = {"X-API-Key": raw}
    verifier = CosignatureVerifier.from_vkey(witness.signer.verifier().vkey)
    with TestClient(create_app(runtime)) as client:
        create_envelope(client, headers)
        first = client.post(f"{API}/log/checkpoint", headers=headers).json()
        create_envelope(client, headers)
        second = client.post(f"{API}/log/checkpoint", headers=headers).json()
    assert second["size"] > first["size"]
    for checkpoint in (first, second):
        assert verify_cosignature(checkpoint["note"], verifier) > 0
        token = runtime.authoritative.read(
            timestamp_key(org_id, checkpoint["size"]),
            runtime.authoritative.head(timestamp_key(org_id, checkpoint["size"]), None).version_id,
        )
        verify_timestamp(token, checkpoint["note"].encode(), pki.root_pem)


def test_the_certificate_pdf_is_timestamped_by_the_configured_tsa(
    witnessed_vault: tuple[Runtime, Any],
    pki: Pki,  # noqa: F811
) -> None:
    runtime, (_, raw, _) = witnessed_vault
    headers = {"X-API-Key": raw}
    with TestClient(create_app(runtime)) as client:
        envelope_id = create_envelope(client, headers)
        assert upload(client, headers, envelope_id, make_pdf(pages=1)).status_code == 201
        pdf = client.get(f"{API}/envelopes/{envelope_id}/vault/certificate?format=pdf", headers=headers)
    assert pdf.status_code == 200, pdf.text
    assert runtime.document_signer is not None
    signature = PdfFileReader(io.BytesIO(pdf.content)).embedded_signatures[0]
    trust = ValidationContext(trust_roots=[runtime.document_signer.asn1()[0]])
    tsa_root = asn1_x509.Certificate.load(asn1_pem.unarmor(pki.root_pem)[2])
    status = validate_pdf_signature(signature, trust, ts_validation_context=ValidationContext(trust_roots=[tsa_root]))
    assert status.intact and status.valid
    assert status.timestamp_validity is not None and status.timestamp_validity.valid
    assert status.timestamp_validity.trusted, "the token chains to the TSA root the vault is configured with"
