"""Signed JSON with a duplicate key is refused by every verifier, though its signature would check.

Each document is really signed by the vault; a second copy of one of its keys is then put in front of the
original, so that Python's last-wins reading (and the signature over it) is unchanged while a first-wins
reader sees the planted value. Before the strict parser each of these verified.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from compliance import strict_json
from compliance.bundles.proof_bundle import verify_bundle
from compliance.certificates.offline_check import verify_certificate
from compliance.checkpoints.auditor_memory import _proof_hashes
from compliance.errors import EvaultError
from compliance.ledger.chain import parse_entry
from compliance.verifier.report import ReportSigner, verify_report
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from vault.cli.main import main
from vault.runtime import Runtime


def _plant(text: str, anchor: str, planted: str) -> str:
    """``anchor`` (an object's opening, e.g. ``{"format":``) with ``planted`` pairs put before its first key."""
    assert text.count(anchor) >= 1, anchor
    head, brace, _ = anchor.partition("{")
    return text.replace(anchor, head + brace + planted + ", " + anchor[len(head) + 1 :], 1)


def test_loads_refuses_a_duplicate_key_at_any_depth() -> None:
    assert strict_json.loads('{"a": [{"b": 1, "c": {"d": 2}}], "e": "a"}') == {"a": [{"b": 1, "c": {"d": 2}}], "e": "a"}
    for text in ['{"a": 1, "a": 1}', '{"x": {"a": 1, "b": 2, "a": 3}}', '[{"k": 1}, {"k": 1, "k": 2}]']:
        with pytest.raises(strict_json.DuplicateKey, match="duplicate key"):
            strict_json.loads(text)
    assert issubclass(strict_json.DuplicateKey, ValueError)


def test_a_ledger_entry_and_a_consistency_proof_with_duplicate_keys_are_refused() -> None:
    with pytest.raises(EvaultError) as caught:
        parse_entry(b'{"type":"x","type":"y"}')
    assert caught.value.code == "Log.Malformed" and "duplicate key" in str(caught.value.details)
    hash_b64 = base64.b64encode(b"\0" * 32).decode()
    assert _proof_hashes(json.dumps({"hashes": [hash_b64]})) == [b"\0" * 32]
    with pytest.raises(EvaultError) as caught:
        _proof_hashes(f'{{"hashes": [], "hashes": ["{hash_b64}"]}}')
    assert caught.value.code == "Log.Malformed"


def _pem(client: Any) -> bytes:
    keys = client.get("/.well-known/evault/keys").json()["keys"]
    return str(next(k["pem"] for k in keys if k["use"] == "checkpoint")).encode()


def test_signed_certificate_bundle_and_report_with_a_duplicate_key_are_refused(
    client: Any, runtime: Runtime, tenant: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    pem = _pem(client)

    certificate = client.get(f"{API}/envelopes/{envelope_id}/vault/certificate", headers=headers)
    assert certificate.status_code == 200, certificate.text
    text = json.dumps(certificate.json())
    verify_certificate(text, pem)  # the honest one verifies
    forged = _plant(text, '{"format":', '"format": "forged"')
    assert json.loads(forged) == certificate.json()  # last-wins: the signature still covers the same body
    with pytest.raises(EvaultError) as caught:
        verify_certificate(forged, pem)
    assert caught.value.code == "Certificate.Malformed" and "duplicate key" in str(caught.value.details)

    bundle = client.get(f"{API}/envelopes/{envelope_id}/proof", headers=headers)
    assert bundle.status_code == 200, bundle.text
    verify_bundle(bundle.text, pem)
    forged = _plant(bundle.text, '{"format":', f'"envelope_id": "env_someoneelse", "origin": "x{envelope_id}"')
    assert json.loads(forged) == bundle.json()
    with pytest.raises(EvaultError) as caught:
        verify_bundle(forged, pem)
    assert caught.value.code == "Log.Malformed" and "duplicate key" in str(caught.value.details)
    (tmp_path / "bundle.json").write_text(forged)
    (tmp_path / "vault.pem").write_bytes(pem)
    assert main(["log", "verify", str(tmp_path / "bundle.json"), "--public-key", str(tmp_path / "vault.pem")]) != 0
    assert "Log.Malformed" in capsys.readouterr().err

    report = json.dumps(ReportSigner(runtime.settings.vault.report_key_path).sign({"verdict": "clean"}))
    vault_pem = runtime.key.public_pem().encode()
    assert verify_report(report.encode(), vault_pem) == {"verdict": "clean"}
    forged = _plant(report, '{"verdict":', '"verdict": "findings"')
    with pytest.raises(EvaultError) as caught:
        verify_report(forged.encode(), vault_pem)
    assert caught.value.code == "Report.Malformed" and "duplicate key" in caught.value.message
