"""docs/evidence-formats.md is precise enough: an auditor's verifier written from it alone accepts what the
service issues, and rejects it once a byte or a claim is changed."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from compliance.certificates.issuance import sign_certificate
from tests import outside_verifier
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from vault.runtime import Runtime


def _pinned_pem(client: Any) -> bytes:
    keys = client.get("/.well-known/evault/keys").json()["keys"]
    return str(next(k["pem"] for k in keys if k["use"] == "checkpoint")).encode()


def _history(client: Any, headers: dict[str, str], *, release: bool) -> str:
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf(pages=2)).status_code == 201
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers).status_code == 200
    if release:
        body = {"reason": "transfer", "transferee": {"vault_id": "vault.other.example"}}
        assert client.post(f"{API}/envelopes/{envelope_id}/vault-out", json=body, headers=headers).status_code == 200
    return envelope_id


@pytest.mark.parametrize("release", [False, True], ids=["vaulted", "released"])
def test_bundle_and_certificate_verify_with_the_documented_rules(client: Any, tenant: Any, release: bool) -> None:
    _, headers = tenant
    envelope_id = _history(client, headers, release=release)
    pem = _pinned_pem(client)

    bundle = client.get(f"{API}/envelopes/{envelope_id}/proof", headers=headers).json()
    events = outside_verifier.verify_bundle(bundle, pem)
    types = [e["type"] for e in events]
    assert types[0] == "envelope.created" and "vault.vaulted_in" in types and "vault.copy_issued" in types
    assert ("vault.released" in types) is release

    certificate = client.get(f"{API}/envelopes/{envelope_id}/vault/certificate", headers=headers).json()
    body = outside_verifier.verify_certificate(certificate, pem)
    assert body["envelope"]["id"] == envelope_id
    assert (body["vault_out"] is not None) is release
    assert len(body["copies"]) == 1


def _altered_bundles(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    flipped = copy.deepcopy(bundle)
    entry = bytearray(base64.b64decode(flipped["events"][0]["entry"]))
    entry[-3] ^= 0x01
    flipped["events"][0]["entry"] = base64.b64encode(bytes(entry)).decode()
    cut = copy.deepcopy(bundle)
    cut["events"] = cut["events"][:-1]
    downgraded = copy.deepcopy(cut)
    downgraded["format"] = "evault-proof-bundle/v1"
    del downgraded["map"]
    resigned = copy.deepcopy(bundle)
    resigned["checkpoint"] = resigned["checkpoint"].replace("\n", "\n\n", 1)
    return {"flipped byte": flipped, "last event cut": cut, "downgraded": downgraded, "note edited": resigned}


def test_altered_evidence_is_rejected(client: Any, tenant: Any, runtime: Runtime) -> None:
    _, headers = tenant
    envelope_id = _history(client, headers, release=True)
    pem = _pinned_pem(client)
    bundle = client.get(f"{API}/envelopes/{envelope_id}/proof", headers=headers).json()
    for name, altered in _altered_bundles(bundle).items():
        with pytest.raises((outside_verifier.Rejected, KeyError, ValueError)):
            outside_verifier.verify_bundle(altered, pem)
            pytest.fail(f"accepted: {name}")

    certificate = client.get(f"{API}/envelopes/{envelope_id}/vault/certificate", headers=headers).json()
    edited = copy.deepcopy(certificate)
    edited["certificate"]["vault_out"] = None
    with pytest.raises(outside_verifier.Rejected, match="signature"):
        outside_verifier.verify_certificate(edited, pem)
    # Lies the vault's own key signs (an insider's forgery): the claims check catches each.
    lies: dict[str, Any] = {
        "copies": [],
        "vault_out": None,
        "assignee_of_record": {"name": "Someone Else"},
    }
    for field, lie in lies.items():
        body = copy.deepcopy(certificate["certificate"]) | {field: lie}
        with pytest.raises(outside_verifier.Rejected):
            outside_verifier.verify_certificate(sign_certificate(body, runtime.key), pem)
            pytest.fail(f"accepted a re-signed certificate with {field} changed")
