"""Signing through a PKCS#11 token (SoftHSM2): a checkpoint the token signs verifies offline, and a service whose
key was rotated onto the token signs checkpoints that an auditor checks from the first (file) key alone."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from compliance.bundles.proof_bundle import verify_bundle
from compliance.checkpoints.auditor_memory import check_consistency, verifier_from_pem
from compliance.ledger.checkpoint_format import Checkpoint, sign_checkpoint, verify_checkpoint
from compliance.ledger.merkle import leaf_hash
from compliance.ledger.pkcs11_signer import Pkcs11Signer, generate_pkcs11_key
from compliance.ledger.vault_key import VaultKey
from storage.settings import Settings
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from vault.api.app import create_app
from vault.runtime import open_runtime

LIBRARY = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN, PIN = "evault-test", "5678"


@pytest.fixture
def softhsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh SoftHSM2 token in a temporary directory (scripts/test.sh installs Debian's softhsm2)."""
    tokens = tmp_path / "softhsm-tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    util = shutil.which("softhsm2-util")
    assert util is not None and Path(LIBRARY).exists(), "install softhsm2 (scripts/test.sh does)"
    subprocess.run(
        [util, "--init-token", "--free", "--label", TOKEN, "--so-pin", "1234", "--pin", PIN],
        check=True,
        capture_output=True,
    )
    return {"EVAULT_PKCS11_LIBRARY": LIBRARY, "EVAULT_PKCS11_TOKEN": TOKEN, "EVAULT_PKCS11_PIN": PIN}


@pytest.mark.once
def test_softhsm_signs_a_checkpoint_that_verifies_offline(softhsm: dict[str, str]) -> None:
    generate_pkcs11_key(LIBRARY, TOKEN, "vault-1", PIN)
    signer = Pkcs11Signer(LIBRARY, TOKEN, "vault-1", PIN)
    try:
        key = VaultKey("evault.local", signer)
        checkpoint = Checkpoint("evault.local/log/org_1", 1, leaf_hash(b"entry 0"))
        note = sign_checkpoint(checkpoint, key.note_signer)
    finally:
        signer.close()
    pem = key.public_pem().encode()  # all an auditor holds: the token's public key, as PEM
    assert verify_checkpoint(note, verifier_from_pem(note, pem), checkpoint.origin) == checkpoint
    assert check_consistency(note, note, json.dumps({"hashes": []}), pem) == (checkpoint, checkpoint)
    tampered = note.replace("\n1\n", "\n2\n", 1)
    with pytest.raises(Exception, match="signature"):
        verify_checkpoint(tampered, verifier_from_pem(tampered, pem), checkpoint.origin)


@pytest.fixture
def vault_env(vault_env: dict[str, str], softhsm: dict[str, str]) -> dict[str, str]:
    return {**vault_env, **softhsm}


def test_a_key_rotated_onto_the_token_signs_the_services_checkpoints(
    client: Any, tenant: Any, evault: Any, vault_env: dict[str, str], tmp_path: Path
) -> None:
    _, headers = tenant
    first_pem = client.get("/.well-known/evault/keys").json()["keys"][0]["pem"].encode()
    code, out, err = evault("signing-key", "rotate", "--hsm", "--json")
    assert code == 0, err
    rotated = json.loads(out)
    assert rotated["key_ref"] == "pkcs11:evault.local-gen1"

    runtime = open_runtime(Settings.from_env(vault_env))
    try:
        assert runtime.key.note_verifier.vkey == rotated["vkey"]
        with TestClient(create_app(runtime)) as hsm_client:
            envelope_id = create_envelope(hsm_client, headers)
            assert upload(hsm_client, headers, envelope_id, make_pdf(pages=1)).status_code == 201
            response = hsm_client.get(f"{API}/envelopes/{envelope_id}/proof/", headers=headers)
            assert response.status_code == 200, response.text
    finally:
        runtime.close()
    bundle = response.json()
    assert bundle["key"]["vkey"] == rotated["vkey"]
    assert verify_bundle(json.dumps(bundle), first_pem).key.generation == 1
