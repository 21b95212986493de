"""A replica holds the vault's secrets, or it does not start (vault/shared_secrets.py, compliance/ledger/key_ring.py).

Replicas share one database and one bucket, but each reads its secrets from its own environment and data
directory, and the embedded default makes a missing one there. Before these checks a second process given an
empty data directory started: it signed checkpoints with a key of its own that no generation recorded, sealed
certificates with a document-signing identity nobody pinned, and minted signing links the first refused (and
would seal webhook keys the others cannot open). Each
test here has the ``runtime`` fixture as the first process and opens the vault again as a replica would, with a
data directory of its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from compliance.ledger.signer import create_key_file
from compliance.signatures.document_identity import CERT_FILE, KEY_FILE
from storage.settings import Settings
from vault.runtime import Runtime, StartupError, open_runtime
from vault.shared_secrets import DOCUMENT_SIGNING, SIGNING_LINK, WEBHOOK_SECRETS, recorded_secrets


def _replica(vault_env: dict[str, str], tmp_path: Path, **more: str) -> Settings:
    return Settings.from_env({**vault_env, "EVAULT_DATA_DIR": str(tmp_path / "replica"), **more})


def _vault_key(vault_env: dict[str, str]) -> dict[str, str]:
    return {"EVAULT_SIGNING_KEY": str(Path(vault_env["EVAULT_DATA_DIR"]) / "vault-signing-key.pem")}


def _all_secrets(vault_env: dict[str, str], runtime: Runtime) -> dict[str, str]:
    data = Path(vault_env["EVAULT_DATA_DIR"])
    return {
        **_vault_key(vault_env),
        "EVAULT_DOCUMENT_SIGNING_KEY": str(data / KEY_FILE),
        "EVAULT_DOCUMENT_SIGNING_CERT": str(data / CERT_FILE),
        "EVAULT_SIGNING_LINK_SECRET": base64.b64encode(runtime.link_secret).decode(),
        "EVAULT_WEBHOOK_SECRETS_KEY": base64.b64encode((data / "webhook-secrets-key").read_bytes()).decode(),
    }


def _fingerprints(runtime: Runtime) -> dict[str, str]:
    return {row.name: row.fingerprint for row in recorded_secrets(runtime.db)}


def test_a_replica_without_the_vault_key_is_refused_and_makes_none(
    runtime: Runtime, vault_env: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(StartupError, match=r"vault-signing-key\.pem does not exist \(set EVAULT_SIGNING_KEY"):
        open_runtime(_replica(vault_env, tmp_path))
    assert not (tmp_path / "replica" / "vault-signing-key.pem").exists()


def test_a_replica_with_another_signing_key_is_refused(
    runtime: Runtime, vault_env: dict[str, str], tmp_path: Path
) -> None:
    other = tmp_path / "other-signing-key.pem"
    create_key_file(other)
    with pytest.raises(StartupError, match="not this vault's first key") as refused:
        open_runtime(_replica(vault_env, tmp_path, EVAULT_SIGNING_KEY=str(other)))
    assert runtime.key.note_verifier.vkey in str(refused.value)


def test_a_replica_that_loses_the_race_to_the_first_key_keeps_no_key_of_its_own(
    runtime: Runtime, vault_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes start on an empty database: both find no first key recorded and make one, and the second to
    record it is refused. Its key signed nothing, and kept in its data directory it would be offered again."""
    monkeypatch.setattr("vault.runtime.first_key_recorded", lambda db: False)  # it looked before the first recorded
    with pytest.raises(StartupError, match="not this vault's first key"):
        open_runtime(_replica(vault_env, tmp_path))
    assert sorted(p.name for p in (tmp_path / "replica").glob("vault-signing-key*")) == []
    monkeypatch.undo()
    with pytest.raises(StartupError, match=r"vault-signing-key\.pem does not exist \(set EVAULT_SIGNING_KEY"):
        open_runtime(_replica(vault_env, tmp_path))  # its next start asks for the vault's key


def test_a_replica_with_secrets_of_its_own_is_refused_naming_each(
    runtime: Runtime, vault_env: dict[str, str], tmp_path: Path
) -> None:
    before = _fingerprints(runtime)
    assert set(before) == {DOCUMENT_SIGNING, SIGNING_LINK, WEBHOOK_SECRETS}
    with pytest.raises(StartupError) as refused:
        open_runtime(_replica(vault_env, tmp_path, **_vault_key(vault_env)))
    message = str(refused.value)
    assert "the document-signing secret is not the one" in message
    assert "EVAULT_DOCUMENT_SIGNING_KEY and EVAULT_DOCUMENT_SIGNING_CERT" in message
    assert "the signing-link secret is not the one" in message and "EVAULT_SIGNING_LINK_SECRET" in message
    assert "the webhook-secrets secret is not the one" in message and "EVAULT_WEBHOOK_SECRETS_KEY" in message
    assert base64.b64encode(runtime.link_secret).decode() not in message
    assert _fingerprints(runtime) == before  # the refused process recorded nothing


def test_a_replica_given_the_vault_secrets_starts_holding_the_same(
    runtime: Runtime, vault_env: dict[str, str], tmp_path: Path
) -> None:
    replica = open_runtime(_replica(vault_env, tmp_path, **_all_secrets(vault_env, runtime)))
    try:
        assert replica.key.note_verifier.vkey == runtime.key.note_verifier.vkey
        assert replica.link_secret == runtime.link_secret
        assert replica.document_signer.certificate == runtime.document_signer.certificate
        assert replica.webhook_box.open("org_x", runtime.webhook_box.seal("org_x", "whsec_same")) == "whsec_same"
    finally:
        replica.close()


def test_the_fingerprints_are_the_certificate_hash_and_keyed_hashes_of_the_secrets(
    runtime: Runtime, vault_env: dict[str, str]
) -> None:
    der = runtime.document_signer.certificate.public_bytes(serialization.Encoding.DER)
    label = b"evault signing-link secret fingerprint v1"
    webhook_key = (Path(vault_env["EVAULT_DATA_DIR"]) / "webhook-secrets-key").read_bytes()
    webhook_label = b"evault webhook-secrets key fingerprint v1"
    assert _fingerprints(runtime) == {
        DOCUMENT_SIGNING: hashlib.sha256(der).hexdigest(),
        SIGNING_LINK: hmac.new(runtime.link_secret, label, hashlib.sha256).hexdigest(),
        WEBHOOK_SECRETS: hmac.new(webhook_key, webhook_label, hashlib.sha256).hexdigest(),
    }


def test_a_secret_changed_on_purpose_is_recorded_after_forget(
    runtime: Runtime, vault_env: dict[str, str], tmp_path: Path, evault: Callable[..., tuple[int, str, str]]
) -> None:
    before = _fingerprints(runtime)
    new_link = base64.b64encode(bytes(range(32))).decode()
    changed = _replica(
        vault_env, tmp_path, **{**_all_secrets(vault_env, runtime), "EVAULT_SIGNING_LINK_SECRET": new_link}
    )
    with pytest.raises(StartupError, match="signing-link") as refused:
        open_runtime(changed)
    assert "document-signing" not in str(refused.value)

    code, out, _ = evault("shared-secrets", "forget", SIGNING_LINK)
    assert code == 0 and "forgot the signing-link fingerprint" in out
    code, out, _ = evault("shared-secrets", "forget", SIGNING_LINK)
    assert code == 0 and "no signing-link fingerprint was recorded" in out

    replica = open_runtime(changed)
    try:
        assert replica.link_secret == bytes(range(32))
    finally:
        replica.close()
    after = _fingerprints(runtime)
    assert after[DOCUMENT_SIGNING] == before[DOCUMENT_SIGNING]
    assert after[SIGNING_LINK] not in (before[SIGNING_LINK], None)
    code, out, _ = evault("shared-secrets", "list", "--json")
    listed: list[dict[str, Any]] = json.loads(out)
    assert code == 0 and {row["name"]: row["fingerprint"] for row in listed} == after
    # the first process, still holding the old secret, would now be refused at its next start
    with pytest.raises(StartupError, match="signing-link"):
        open_runtime(Settings.from_env(vault_env))
