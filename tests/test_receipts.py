"""Signed receipts: the release receipt over HTTP, checked offline with only the public key, and refused when
any part is altered, whether by a forger (the signature breaks) or by the vault itself (the proofs disagree)."""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from compliance.certificates.issuance import key_id_of
from compliance.errors import EvaultError
from compliance.receipts.offline_check import verify_receipt
from compliance.receipts.pointer import resolve
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from vault.runtime import Runtime

REPO = Path(__file__).resolve().parents[1]
TRANSFEREE = {"vault_id": "vault.other.example", "name": "Warehouse Bank"}


def _public_pem(client: Any) -> str:
    keys = client.get("/.well-known/evault/keys").json()["keys"]
    pem: str = next(k["pem"] for k in keys if k["use"] == "checkpoint")
    return pem


def _released(client: Any, headers: dict[str, str]) -> str:
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf(pages=2)).status_code == 201
    body = {"reason": "transfer", "transferee": TRANSFEREE, "note": "sold to the warehouse"}
    response = client.post(f"{API}/envelopes/{envelope_id}/vault-out", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return envelope_id


def _receipt(client: Any, headers: dict[str, str], envelope_id: str) -> dict[str, Any]:
    response = client.get(f"{API}/envelopes/{envelope_id}/release-receipt", headers=headers)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def _cli(tmp_path: Path, receipt: Any, pem: str | None) -> subprocess.CompletedProcess[str]:
    """`evault receipt verify` in an empty directory, with no EVAULT_* variable: only the files it is given."""
    work = tmp_path / "auditor"
    work.mkdir(exist_ok=True)
    (work / "receipt.json").write_text(json.dumps(receipt))
    command = [sys.executable, "-m", "vault.cli.main", "receipt", "verify", "receipt.json"]
    if pem is not None:
        (work / "vault.pem").write_text(pem)
        command += ["--public-key", "vault.pem"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVAULT_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(command, env=env, cwd=work, capture_output=True, text=True, timeout=120, check=False)


def _resigned(runtime: Runtime, document: dict[str, Any]) -> dict[str, Any]:
    """What a vault that lies would hand out: the altered receipt signed again with the vault's own key."""
    body = document["receipt"]
    value = runtime.key.sign(rfc8785.dumps(body))
    signature = {
        "alg": "Ed25519",
        "key_id": key_id_of(runtime.key.public_key),
        "value": base64.b64encode(value).decode(),
    }
    return {"receipt": body, "signature": signature}


def test_release_receipt_says_why_to_whom_and_when_and_verifies_offline(
    client: Any, tenant: Any, tmp_path: Path
) -> None:
    org_id, headers = tenant
    envelope_id = _released(client, headers)
    document = _receipt(client, headers, envelope_id)
    pem = _public_pem(client)
    body = document["receipt"]
    assert body["format"] == "evault-receipt/v1" and body["kind"] == "release"
    fields = body["fields"]
    assert fields["reason"] == "transfer" and fields["transferee"] == TRANSFEREE
    assert fields["note"] == "sold to the warehouse" and fields["organisation"] == org_id
    envelope = client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()
    assert [d["sha256"] for d in fields["documents"]] == [d["sha256"] for d in envelope["vault"]["documents"]]
    assert fields["released_at"] == envelope["vault"]["released"]["at"]
    audit = client.get(f"{API}/envelopes/{envelope_id}/audit", headers=headers).json()["events"]
    release = next(e for e in audit if e["type"] == "vault.released")
    assert {e["role"]: e["leaf_index"] for e in body["events"]}["release"] == release["leaf_index"]

    verified = verify_receipt(json.dumps(document), pem.encode())
    assert verified.events["release"]["type"] == "vault.released"
    run = _cli(tmp_path, document, pem)
    assert run.returncode == 0, run.stderr
    assert "OK: release receipt" in run.stdout and f"release: vault.released at {org_id}" in run.stdout


ALTERATIONS = {
    "reason": lambda r: r["receipt"]["fields"].__setitem__("reason", "payoff"),
    "transferee": lambda r: r["receipt"]["fields"]["transferee"].__setitem__("vault_id", "vault.thief.example"),
    "document hash": lambda r: r["receipt"]["fields"]["documents"][0].__setitem__("sha256", "0" * 64),
    "time": lambda r: r["receipt"]["fields"].__setitem__("released_at", "2020-01-01T00:00:00Z"),
    "issued_at": lambda r: r["receipt"].__setitem__("issued_at", "2020-01-01T00:00:00Z"),
    "leaf index": lambda r: r["receipt"]["events"][1].__setitem__("leaf_index", 0),
    "envelope": lambda r: r["receipt"].__setitem__("envelope_id", "env_00000000000000000000"),
    "pointer": lambda r: r["receipt"]["bindings"][3].__setitem__("pointer", "/data/authoritative_copy_id"),
    "checkpoint": lambda r: r["receipt"]["checkpoints"][0].__setitem__(
        "note", r["receipt"]["checkpoints"][0]["note"].replace("\n", "\n\n", 1)
    ),
    "signature": lambda r: r["signature"].__setitem__("value", base64.b64encode(b"\0" * 64).decode()),
    "extra member": lambda r: r.__setitem__("note", "trust me"),
}


@pytest.mark.parametrize("what", sorted(ALTERATIONS))
def test_any_altered_field_fails_the_receipt(client: Any, tenant: Any, what: str) -> None:
    _, headers = tenant
    document = _receipt(client, headers, _released(client, headers))
    altered = copy.deepcopy(document)
    ALTERATIONS[what](altered)
    with pytest.raises(EvaultError):
        verify_receipt(json.dumps(altered), _public_pem(client).encode())


def test_the_cli_exits_non_zero_on_an_altered_field_or_a_wrong_key(client: Any, tenant: Any, tmp_path: Path) -> None:
    _, headers = tenant
    document = _receipt(client, headers, _released(client, headers))
    pem = _public_pem(client)
    altered = copy.deepcopy(document)
    altered["receipt"]["fields"]["reason"] = "payoff"
    run = _cli(tmp_path, altered, pem)
    assert run.returncode == 2 and "Receipt.BadSignature" in run.stderr, run.stderr
    stranger = _cli(tmp_path, document, _stranger_pem())
    assert stranger.returncode == 2 and "BadSignature" in stranger.stderr, stranger.stderr
    duplicate = json.dumps(document)[:-1] + ', "receipt": {}}'
    (tmp_path / "auditor" / "dup.json").write_text(duplicate)
    with pytest.raises(EvaultError) as refused:
        verify_receipt(duplicate, pem.encode())
    assert refused.value.code == "Receipt.Malformed"
    no_key = _cli(tmp_path, document, None)
    assert no_key.returncode == 3, no_key.stderr


def _stranger_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def test_a_vault_that_signs_a_lie_is_caught_by_the_proofs(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    document = _receipt(client, headers, _released(client, headers))
    pem = _public_pem(client).encode()
    cases: dict[str, tuple[str, Any]] = {}

    lie = copy.deepcopy(document)
    lie["receipt"]["fields"]["reason"] = "payoff"
    cases["bound field"] = ("Receipt.Inconsistent", lie)
    unbound = copy.deepcopy(document)
    unbound["receipt"]["bindings"] = [b for b in unbound["receipt"]["bindings"] if b["field"] != "transferee"]
    cases["binding dropped"] = ("Receipt.Inconsistent", unbound)
    no_vault_in = copy.deepcopy(document)
    no_vault_in["receipt"]["events"] = [e for e in no_vault_in["receipt"]["events"] if e["role"] != "vault_in"]
    no_vault_in["receipt"]["bindings"] = [b for b in no_vault_in["receipt"]["bindings"] if b["event"] != "vault_in"]
    cases["event dropped"] = ("Receipt.Inconsistent", no_vault_in)
    moved = copy.deepcopy(document)
    moved["receipt"]["events"][1]["leaf_index"] = moved["receipt"]["events"][0]["leaf_index"]
    cases["event moved"] = ("Log.InvalidProof", moved)
    issuer = copy.deepcopy(document)
    issuer["receipt"]["issuer"]["key_id"] = "sha256:" + "0" * 64
    cases["issuer"] = ("Receipt.Inconsistent", issuer)
    unknown = copy.deepcopy(document)
    unknown["receipt"]["kind"] = "gift"
    cases["unknown kind"] = ("Receipt.Malformed", unknown)
    for name, (code, altered) in cases.items():
        with pytest.raises(EvaultError) as refused:
            verify_receipt(json.dumps(_resigned(runtime, altered)), pem)
        assert refused.value.code == code, (name, refused.value.code, refused.value.message)
    assert verify_receipt(json.dumps(_resigned(runtime, copy.deepcopy(document))), pem).kind == "release"


def test_release_receipt_refusals(client: Any, tenant: Any, make_key: Any) -> None:
    org_id, headers = tenant
    vaulted = create_envelope(client, headers)
    assert upload(client, headers, vaulted, make_pdf()).status_code == 201
    for envelope_id in (vaulted, create_envelope(client, headers)):
        early = client.get(f"{API}/envelopes/{envelope_id}/release-receipt", headers=headers)
        assert (early.status_code, early.json()["code"]) == (409, "Receipt.NotReleased")
    released = _released(client, headers)
    _, stranger = make_key()
    other = client.get(f"{API}/envelopes/{released}/release-receipt", headers={"X-API-Key": stranger})
    assert (other.status_code, other.json()["code"]) == (404, "Envelope.NotFound")
    missing = client.get(f"{API}/envelopes/env_00000000000000000000/release-receipt", headers=headers)
    assert (missing.status_code, missing.json()["code"]) == (404, "Envelope.NotFound")
    _, reader = make_key(["vault:read"], org_id=org_id)
    # A reader without vault:write still gets the receipt once a checkpoint covers the release.
    assert client.get(f"{API}/envelopes/{released}/release-receipt", headers=headers).status_code == 200
    assert client.get(f"{API}/envelopes/{released}/release-receipt", headers={"X-API-Key": reader}).status_code == 200


@pytest.mark.once
def test_a_pointers_array_index_is_ascii_digits_only() -> None:
    """RFC 6901 spells an index in ASCII digits; ``str.isdigit()`` alone takes "\u0663" (read as 3) and "\u00b2"."""
    document = {"a": [10, 11, 12, 13]}
    assert resolve(document, "/a/3") == 13
    assert resolve(document, "/a/\u0663") is None and resolve(document, "/a/\u00b2") is None
