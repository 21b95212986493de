"""The evidence package: one zip with everything about an envelope, checked offline; any altered byte fails,
and so does a package the vault signed whose parts contradict each other."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from compliance.certificates.issuance import key_id_of
from compliance.errors import EvaultError
from compliance.evidence_package.import_check import verify_export
from compliance.evidence_package.manifest import canonical_zip, file_entry
from compliance.evidence_package.offline_check import verify_package
from tests import outside_package_verifier
from tests.helpers import API, create_envelope, pipe_messages, upload
from tests.pdf_factory import make_pdf
from vault.runtime import Runtime
from vault.worker_pool import HANDOFF_MIN_BYTES

REPO = Path(__file__).resolve().parents[1]


def _pem(client: Any) -> bytes:
    keys = client.get("/.well-known/evault/keys").json()["keys"]
    return str(next(k["pem"] for k in keys if k["use"] == "checkpoint")).encode()


def _history(client: Any, headers: dict[str, str], *, release: bool) -> str:
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf(pages=2)).status_code == 201
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers).status_code == 200
    assert client.get(f"{API}/envelopes/{envelope_id}/certified-copy", headers=headers).status_code == 200
    if release:
        body = {"reason": "transfer", "transferee": {"vault_id": "vault.other.example"}}
        assert client.post(f"{API}/envelopes/{envelope_id}/vault-out", json=body, headers=headers).status_code == 200
    return envelope_id


def _package(client: Any, headers: dict[str, str], envelope_id: str) -> bytes:
    response = client.get(f"{API}/envelopes/{envelope_id}/evidence", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    return bytes(response.content)


def _files(package: bytes) -> dict[str, bytes]:
    archive = zipfile.ZipFile(io.BytesIO(package))
    return {name: archive.read(name) for name in archive.namelist()}


def _cli(tmp_path: Path, package: bytes, pem: bytes) -> subprocess.CompletedProcess[str]:
    work = tmp_path / "auditor"
    work.mkdir(exist_ok=True)
    (work / "evidence.zip").write_bytes(package)
    (work / "vault.pem").write_bytes(pem)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVAULT_")}
    env["PYTHONPATH"] = str(REPO)
    command = [
        sys.executable,
        "-m",
        "vault.cli.main",
        "evidence",
        "verify",
        "evidence.zip",
        "--public-key",
        "vault.pem",
    ]
    return subprocess.run(command, env=env, cwd=work, capture_output=True, text=True, timeout=120, check=False)


def _resigned(runtime: Runtime, files: dict[str, bytes]) -> bytes:
    """What a vault that assembles a wrong package would hand out: files changed, manifest signed again."""
    document = json.loads(files["manifest.json"])
    body = document["manifest"]
    body["files"] = [file_entry(path, data) for path, data in files.items() if path != "manifest.json"]
    value = base64.b64encode(runtime.key.sign(rfc8785.dumps(body))).decode()
    signed = {
        "manifest": body,
        "signature": {"alg": "Ed25519", "key_id": key_id_of(runtime.key.public_key), "value": value},
    }
    return canonical_zip({**files, "manifest.json": json.dumps(signed).encode()})


@pytest.mark.parametrize("release", [False, True], ids=["vaulted", "released"])
def test_package_holds_the_evidence_and_verifies_offline(
    client: Any, tenant: Any, tmp_path: Path, release: bool
) -> None:
    _, headers = tenant
    envelope_id = _history(client, headers, release=release)
    package = _package(client, headers, envelope_id)
    files = _files(package)
    envelope = client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()
    (document,) = envelope["vault"]["documents"]
    expected = {
        "manifest.json",
        f"documents/{document['id']}.pdf",
        "copies/register.json",
        "certificate/certificate.json",
        "certificate/certificate.pdf",
        "audit/trail.json",
        "proof/bundle.json",
        "proof/checkpoint.txt",
        "keys/keys.json",
    } | ({"receipts/release.json"} if release else set())
    assert set(files) == expected
    assert hashlib.sha256(files[f"documents/{document['id']}.pdf"]).hexdigest() == document["sha256"]
    copies = json.loads(files["copies/register.json"])["copies"]
    assert len(copies) == 2 and all(c["source_sha256"] == document["sha256"] for c in copies)
    result = verify_package(package, _pem(client))
    assert result.bundle.completeness is not None and len(result.receipts) == int(release)
    run = _cli(tmp_path, package, _pem(client))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "files match the signed manifest" in run.stdout
    # An auditor's own code, written from docs/evidence-package.md alone, agrees.
    assert outside_package_verifier.verify_package(package, _pem(client))["envelope_id"] == envelope_id


def test_any_altered_byte_fails_the_package(client: Any, tenant: Any, tmp_path: Path) -> None:
    _, headers = tenant
    package = _package(client, headers, _history(client, headers, release=True))
    pem = _pem(client)
    step = max(1, len(package) // 150)
    positions = sorted({*range(0, 64), *range(0, len(package), step), *range(len(package) - 64, len(package))})
    for at in positions:
        altered = bytearray(package)
        altered[at] ^= 0x01
        with pytest.raises(EvaultError):
            verify_package(bytes(altered), pem)
    with pytest.raises(EvaultError):
        verify_package(package + b"\0", pem)
    for at in positions[::5]:
        altered = bytearray(package)
        altered[at] ^= 0x01
        with pytest.raises((outside_package_verifier.Rejected, ValueError, KeyError, struct.error)):
            outside_package_verifier.verify_package(bytes(altered), pem)
    flipped = bytearray(package)
    flipped[len(package) // 2] ^= 0x01
    run = _cli(tmp_path, bytes(flipped), pem)
    assert run.returncode == 2 and "INVALID: Package." in run.stderr, run.stderr


@pytest.mark.once
@pytest.mark.parametrize("bit", [0, 3, 5, 6, 11])
def test_a_flag_set_on_a_file_is_refused_as_altered(bit: int) -> None:
    """A package's files carry no flags (docs/evidence-package.md). One byte flipped in the central directory's
    flags once made zipfile raise RuntimeError ("encrypted, password required") out of the offline check (CI,
    test_any_altered_byte_fails_the_package, where the flipped positions follow the package's length): now
    every flag set is the package altered."""
    package = bytearray(canonical_zip({"manifest.json": b"{}", "keys/keys.json": b"{}"}))
    directory = package.index(b"PK\x01\x02")
    flags = struct.unpack_from("<H", package, directory + 8)[0]
    struct.pack_into("<H", package, directory + 8, flags | 1 << bit)
    with pytest.raises(EvaultError) as refused:
        verify_package(bytes(package), b"")
    assert refused.value.code == "Package.Altered", refused.value
    with pytest.raises(EvaultError) as refused:  # an import reads the manifest first, to find its signer
        verify_export(bytes(package), [b"any trusted key"], "vault.here.example", [])
    assert refused.value.code == "Import.Malformed", refused.value


def test_a_changed_file_in_a_tidy_zip_fails_on_its_hash(client: Any, tenant: Any) -> None:
    _, headers = tenant
    package = _package(client, headers, _history(client, headers, release=False))
    files = _files(package)
    path = next(p for p in files if p.startswith("documents/"))
    files[path] = files[path].replace(b"%%EOF", b"%%EOF\n%", 1)
    with pytest.raises(EvaultError) as refused:
        verify_package(canonical_zip(files), _pem(client))
    assert refused.value.code == "Package.Altered"
    deflated = io.BytesIO()
    with zipfile.ZipFile(deflated, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in _files(package).items():
            archive.writestr(name, data)
    with pytest.raises(EvaultError) as refused:
        verify_package(deflated.getvalue(), _pem(client))
    assert refused.value.code == "Package.Altered"
    extra = {**_files(package), "notes/readme.txt": b"trust me"}
    with pytest.raises(EvaultError) as refused:
        verify_package(canonical_zip(extra), _pem(client))
    assert refused.value.code == "Package.Altered"


def test_a_package_signed_with_contradicting_parts_fails(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = _history(client, headers, release=True)
    package = _package(client, headers, envelope_id)
    pem = _pem(client)
    assert verify_package(_resigned(runtime, _files(package)), pem).manifest["envelope_id"] == envelope_id
    other = _files(_package(client, headers, _history(client, headers, release=True)))

    def swap_document(files: dict[str, bytes]) -> None:
        path = next(p for p in files if p.startswith("documents/"))
        files[path] = make_pdf(pages=3)

    def drop_copy(files: dict[str, bytes]) -> None:
        register = json.loads(files["copies/register.json"])
        register["copies"] = register["copies"][:1]
        files["copies/register.json"] = json.dumps(register).encode()

    def drop_event(files: dict[str, bytes]) -> None:
        trail = json.loads(files["audit/trail.json"])
        del trail["events"][1]
        files["audit/trail.json"] = json.dumps(trail).encode()

    def foreign_receipt(files: dict[str, bytes]) -> None:
        files["receipts/release.json"] = other["receipts/release.json"]

    def no_receipt(files: dict[str, bytes]) -> None:
        del files["receipts/release.json"]

    def foreign_pdf(files: dict[str, bytes]) -> None:
        files["certificate/certificate.pdf"] = other["certificate/certificate.pdf"]

    def foreign_bundle(files: dict[str, bytes]) -> None:
        files["proof/bundle.json"] = other["proof/bundle.json"]

    for change in (swap_document, drop_copy, drop_event, foreign_receipt, no_receipt, foreign_pdf, foreign_bundle):
        files = _files(package)
        change(files)
        with pytest.raises(EvaultError) as refused:
            verify_package(_resigned(runtime, files), pem)
            pytest.fail(f"{change.__name__} was accepted")
        assert refused.value.code == "Package.Inconsistent", (change.__name__, refused.value.message)
        if change is not foreign_pdf:  # the outside verifier leaves the PDF signature to the auditor's tool
            with pytest.raises(outside_package_verifier.Rejected):
                outside_package_verifier.verify_package(_resigned(runtime, files), pem)


def test_evidence_refusals(client: Any, tenant: Any, make_key: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    _, stranger = make_key()
    other = client.get(f"{API}/envelopes/{envelope_id}/evidence", headers={"X-API-Key": stranger})
    assert (other.status_code, other.json()["code"]) == (404, "Envelope.NotFound")
    missing = client.get(f"{API}/envelopes/env_00000000000000000000/evidence", headers=headers)
    assert (missing.status_code, missing.json()["code"]) == (404, "Envelope.NotFound")
    # Not yet vaulted: the package still proves the history so far (no documents, no copies).
    files = _files(_package(client, headers, envelope_id))
    assert not [p for p in files if p.startswith("documents/")]


def test_a_large_package_comes_from_its_worker_as_a_memory_file(
    client: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package holds the envelope's documents, so it is as large as they are; read from the evidence worker's
    pipe, each MiB cost the service's thread about a millisecond. It crosses as a memory file's descriptor: no
    message the service receives holds it, and the package is whole."""
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    document = make_pdf(pages=2, size_bytes=2 * 1024 * 1024)
    assert upload(client, headers, envelope_id, document).status_code == 201
    _, received = pipe_messages(monkeypatch)
    package = _package(client, headers, envelope_id)
    assert len(package) > len(document) and 0 < max(received) < HANDOFF_MIN_BYTES, received
    assert document in _files(package).values()
    assert verify_package(package, _pem(client)).bundle.completeness is not None
