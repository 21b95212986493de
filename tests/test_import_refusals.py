"""``evault import`` refuses by name, and a refused package changes nothing in the receiving vault: not a row of
any table, not the log's size, not an object version (docs/vault-transfer.md). The refusals here are the ones
tests/test_vault_transfer.py does not raise: a seal that does not verify here, a release that is not its
chain's head, a package that does not parse, and one whose signed parts contradict the hand-off."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from compliance.evidence_package.manifest import canonical_zip
from compliance.ledger.event_catalogue import CHECK_FAILED
from compliance.ledger.events import Actor, append_event
from compliance.signatures.pdf_validation import DocumentSignatures
from storage.ids import utcnow
from tests import signed_pdfs
from tests.export_packages import export_package, release_to_self, vault_pem, vault_state
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from tests.test_vault_transfer import _files, _resigned
from vault import vault_in
from vault.custody import Custody
from vault.runtime import Runtime

Evault = Callable[..., tuple[int, str, str]]


def _import(evault: Evault, tmp_path: Path, package: bytes, org_id: str, key: Path) -> tuple[int, str, str]:
    (tmp_path / "package.zip").write_bytes(package)
    return evault("import", str(tmp_path / "package.zip"), "--org", org_id, "--trusted-key", str(key))


def _refused(evault: Evault, tmp_path: Path, package: bytes, org_id: str, key: Path) -> tuple[str, dict[str, Any]]:
    """The named reason ``evault import`` exits 1 with, and its details."""
    code, out, err = _import(evault, tmp_path, package, org_id, key)
    assert code == 1 and out == "", (code, out, err)
    first, _, rest = err.partition("\n")
    assert first.startswith("evault: Import."), err
    return first.split(":")[1].strip(), json.loads(rest) if rest.strip() else {}


def _grade_only(custody: Custody, graded: DocumentSignatures, position: int) -> dict[str, Any]:
    """A sending vault that records its documents' signature verdicts but vaults a broken seal anyway."""
    return graded.as_json()


def test_a_seal_that_does_not_verify_here_is_refused_and_changes_nothing(
    client: Any,
    runtime: Runtime,
    tenant: Any,
    make_key: Any,
    evault: Evault,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, headers = tenant
    receiver = make_key()[0]
    key = vault_pem(client, tmp_path / "vault.pem")

    # One byte changed inside the signed range: the signature no longer covers these bytes. This vault's vault-in
    # refuses such a PDF (Document.SignatureInvalid); a sender that only graded it hands it on with every hash,
    # proof and receipt intact, so only the re-validation here can catch it.
    with monkeypatch.context() as sender:
        sender.setattr(vault_in, "_check_signatures", _grade_only)
        broken = export_package(
            client, headers, release_to_self(client, runtime, headers, signed_pdfs.tampered_in_signed_range())
        )
    before = vault_state(runtime)
    reason, details = _refused(evault, tmp_path, broken, receiver, key)
    assert reason == "Import.SealInvalid", details
    assert details["signatures"]["acceptable"] is False
    assert "not_intact" in details["signatures"]["signatures"][0]["anomalies"]
    assert vault_state(runtime) == before

    # A sound seal whose signer this vault does not trust, when it requires trusted signers.
    sound = export_package(client, headers, release_to_self(client, runtime, headers, signed_pdfs.valid()))
    roots = tmp_path / "other-roots.pem"
    roots.write_bytes(signed_pdfs.tsa_pki().root_pem)
    with monkeypatch.context() as strict:
        strict.setenv("EVAULT_SIGNER_TRUST_ROOTS", str(roots))
        strict.setenv("EVAULT_REQUIRE_TRUSTED_SIGNERS", "true")
        before = vault_state(runtime)
        reason, details = _refused(evault, tmp_path, sound, receiver, key)
        assert reason == "Import.SealInvalid", details
        assert details["signatures"]["signatures"][0]["trusted"] is False
        assert vault_state(runtime) == before
    assert _import(evault, tmp_path, sound, receiver, key)[0] == 0  # the same package, signers not required trusted


def test_a_release_an_event_followed_is_refused_and_changes_nothing(
    client: Any, runtime: Runtime, tenant: Any, make_key: Any, evault: Evault, tmp_path: Path
) -> None:
    org_id, headers = tenant
    receiver = make_key()[0]
    key = vault_pem(client, tmp_path / "vault.pem")
    envelope_id = release_to_self(client, runtime, headers, make_pdf(text="Released, then checked"))
    with runtime.db.session() as session:  # the sender recorded a failed check after the release
        data = {"verdict": "fail", "failed": []}
        append_event(
            session,
            actor=Actor(org_id),
            envelope_id=envelope_id,
            event_type=CHECK_FAILED,
            occurred_at=utcnow(),
            data=data,
        )
    package = export_package(client, headers, envelope_id)
    before = vault_state(runtime)
    reason, details = _refused(evault, tmp_path, package, receiver, key)
    assert (reason, details["head_type"]) == ("Import.ReleaseNotHead", CHECK_FAILED.name)
    assert vault_state(runtime) == before


def test_a_package_that_does_not_parse_is_refused_as_malformed_and_changes_nothing(
    client: Any, runtime: Runtime, tenant: Any, make_key: Any, evault: Evault, tmp_path: Path
) -> None:
    _, headers = tenant
    receiver = make_key()[0]
    key = vault_pem(client, tmp_path / "vault.pem")
    package = export_package(client, headers, release_to_self(client, runtime, headers, make_pdf(text="Malformed")))
    files = _files(package)
    signing_key = runtime.key
    certificate = next(p for p in files if p.startswith("certificate/") and p.endswith(".json"))
    cases = {
        "not a zip": b"PK\x03\x04 this is not a zip archive",
        "a manifest that is not JSON": canonical_zip({**files, "manifest.json": b'{"manifest": '}),
        "the certificate left out, manifest signed again": _resigned(
            signing_key, {p: d for p, d in files.items() if p != certificate}
        ),
        "the certificate not JSON, manifest signed again": _resigned(signing_key, {**files, certificate: b"{"}),
    }
    before = vault_state(runtime)
    for case, data in cases.items():
        reason, details = _refused(evault, tmp_path, data, receiver, key)
        assert reason == "Import.Malformed", (case, details)
    assert vault_state(runtime) == before
    assert _import(evault, tmp_path, package, receiver, key)[0] == 0  # the package itself was sound


def test_an_evidence_package_of_a_record_never_released_is_inconsistent_and_changes_nothing(
    client: Any, runtime: Runtime, tenant: Any, make_key: Any, evault: Evault, tmp_path: Path
) -> None:
    """An evidence package is signed and proven like an export package, but hands nothing over: no release."""
    _, headers = tenant
    receiver = make_key()[0]
    key = vault_pem(client, tmp_path / "vault.pem")
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf(text="Kept here")).status_code == 201
    evidence = client.get(f"{API}/envelopes/{envelope_id}/evidence", headers=headers)
    assert evidence.status_code == 200, evidence.text
    before = vault_state(runtime)
    reason, details = _refused(evault, tmp_path, evidence.content, receiver, key)
    assert reason == "Import.Inconsistent", details
    assert vault_state(runtime) == before
