"""Transfer to another vault: the sender's export package, imported by a second running vault only after every
signature, proof and hash in it verified against the sender's trusted key; tampered packages are refused by name
and change nothing (docs/vault-transfer.md)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import rfc8785
from sqlalchemy import func
from sqlmodel import col, select

from compliance.certificates.issuance import key_id_of
from compliance.certificates.offline_check import verify_certificate
from compliance.errors import Conflict
from compliance.evidence_package.import_check import verify_export
from compliance.evidence_package.manifest import canonical_zip, file_entry
from compliance.evidence_package.offline_check import verify_package
from compliance.ledger.event_catalogue import CHECK_FAILED
from compliance.ledger.events import Actor, append_event
from compliance.ledger.log_error import LogError
from compliance.ledger.vault_key import VaultKey, load_or_create_key, public_key_path
from compliance.receipts.after_release import check_still_released
from compliance.receipts.offline_check import ReceiptInvalid, verify_receipt
from storage.db import Database
from storage.embedded_s3 import EmbeddedS3
from storage.ids import as_utc, utcnow
from storage.keys import AUTHORITATIVE_PREFIX
from storage.models import EnvelopeImport, Event, VaultedDocument, VaultRecord
from storage.s3_client import make_s3_client
from tests.helpers import API, create_envelope, own_database, server_port, store_env, together, upload
from tests.pdf_factory import make_pdf
from tests.signed_pdfs import valid as signed_pdf
from vault.cli.main import main as evault_main
from vault.imports import import_package
from vault.rebuild.replay import step_for
from vault.rebuild.rows import Entry, Rows, parse_time
from vault.runtime import Runtime
from vault.tenancy import SCOPES, create_api_key, create_organisation

ROOT = Path(__file__).resolve().parent.parent


def _files(package: bytes) -> dict[str, bytes]:
    archive = zipfile.ZipFile(io.BytesIO(package))
    return {name: archive.read(name) for name in archive.namelist()}


# --- the export route, in process -------------------------------------------------------------------------------


def test_export_package_only_after_a_vault_out_for_a_transfer(client: Any, tenant: Any, make_key: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf(pages=1)).status_code == 201
    url = f"{API}/envelopes/{envelope_id}/export-package"
    before = client.get(url, headers=headers)
    assert (before.status_code, before.json()["code"]) == (409, "Export.NotReleased")

    paid = create_envelope(client, headers)
    assert upload(client, headers, paid, make_pdf(pages=1)).status_code == 201
    out = client.post(f"{API}/envelopes/{paid}/vault-out", json={"reason": "payoff"}, headers=headers)
    assert out.status_code == 200
    payoff = client.get(f"{API}/envelopes/{paid}/export-package", headers=headers)
    assert (payoff.status_code, payoff.json()["code"]) == (409, "Export.NotTransfer")

    body = {"reason": "transfer", "transferee": {"vault_id": "vault-b.example", "name": "Vault B"}}
    assert client.post(f"{API}/envelopes/{envelope_id}/vault-out", json=body, headers=headers).status_code == 200
    _, other = make_key()
    foreign = client.get(url, headers={"X-API-Key": other})
    assert (foreign.status_code, foreign.json()["code"]) == (404, "Envelope.NotFound")

    answer = client.get(url, headers=headers)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/zip"
    keys = client.get("/.well-known/evault/keys").json()["keys"]
    pem = str(next(k["pem"] for k in keys if k["use"] == "checkpoint")).encode()
    verified = verify_package(answer.content, pem)  # an export package is an evidence package
    assert verified.receipts["receipts/release.json"].fields["transferee"]["vault_id"] == "vault-b.example"
    assert verified.bundle.events[-1]["type"] == "vault.released"


# --- two running vaults ------------------------------------------------------------------------------------------


@dataclass
class Vault:
    """One ``evault serve`` process with its own database, buckets, data directory, key and port."""

    name: str
    env: dict[str, str]
    api: str
    org_id: str
    headers: dict[str, str]

    @property
    def pem(self) -> bytes:
        return public_key_path(Path(self.env["EVAULT_DATA_DIR"]) / "vault-signing-key.pem").read_bytes()

    def key(self) -> VaultKey:
        path = Path(self.env["EVAULT_DATA_DIR"]) / "vault-signing-key.pem"
        return load_or_create_key(path, self.name, create=False)

    def db(self) -> Database:
        return Database(self.env["EVAULT_DATABASE_URL"])


@contextmanager
def _serve(embedded_s3: EmbeddedS3, tmp_path: Path, name: str) -> Iterator[Vault]:
    with own_database(tmp_path, name.split(".")[0]) as url:
        port = server_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("EVAULT_")},
            "EVAULT_DATA_DIR": str(tmp_path / name),
            "EVAULT_DATABASE_URL": url,
            **store_env(embedded_s3, uuid.uuid4().hex[:10]),
            "EVAULT_PORT": str(port),
            "EVAULT_KEY_NAME": name,
            "EVAULT_LOG_ORIGIN": f"{name}/log",
            "EVAULT_RETENTION_DAYS": "1",
            "EVAULT_RATE_LIMIT": "100000/60",
            "PYTHONPATH": str(ROOT),
        }
        log = (tmp_path / f"{name}.log").open("w")
        server = subprocess.Popen([sys.executable, "-m", "vault.cli.main", "serve"], env=env, stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                assert server.poll() is None, (tmp_path / f"{name}.log").read_text()[-3000:]
                assert time.monotonic() < deadline, f"{name}: evault serve did not answer /health"
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.3)
            db = Database(url)
            with db.session() as session:
                org_id = create_organisation(session, f"Org of {name}").id
                _, raw = create_api_key(session, org_id, "test key", list(SCOPES))
            db.dispose()
            yield Vault(name, env, base, org_id, {"X-API-Key": raw})
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)
            log.close()


def _released(sender: Vault, receiver: str) -> tuple[str, bytes]:
    """A signed PDF vaulted at the sender, released for a transfer to ``receiver``: (envelope id, package)."""
    with httpx.Client(base_url=sender.api, timeout=60) as http:
        envelope_id = create_envelope(http, sender.headers)
        assert upload(http, sender.headers, envelope_id, signed_pdf(), flow="upload").status_code == 201
        body = {"reason": "transfer", "transferee": {"vault_id": receiver, "name": "the receiving vault"}}
        assert (
            http.post(f"{API}/envelopes/{envelope_id}/vault-out", json=body, headers=sender.headers).status_code == 200
        )
        answer = http.get(f"{API}/envelopes/{envelope_id}/export-package", headers=sender.headers)
    assert answer.status_code == 200, answer.text
    return envelope_id, answer.content


def _resigned(key: VaultKey, files: dict[str, bytes]) -> bytes:
    """What a forger holding the sender's key would hand out: files changed, the manifest signed again."""
    document = json.loads(files["manifest.json"])
    body = document["manifest"]
    body["files"] = [file_entry(path, data) for path, data in files.items() if path != "manifest.json"]
    value = base64.b64encode(key.sign(rfc8785.dumps(body))).decode()
    signature = {"alg": "Ed25519", "key_id": key_id_of(key.public_key), "value": value}
    return canonical_zip({**files, "manifest.json": json.dumps({"manifest": body, "signature": signature}).encode()})


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def _written(vault: Vault) -> tuple[int, int, int]:
    """What an import writes: log entries, import claims, and object versions in the authoritative bucket."""
    db = vault.db()
    with db.read_session() as session:
        # Envelope events only: the receiver's checkpointer may commit its head map meanwhile.
        events = session.exec(select(func.count()).select_from(Event).where(col(Event.envelope_id).is_not(None))).one()
        claims = session.exec(select(func.count()).select_from(EnvelopeImport)).one()
    db.dispose()
    s3 = make_s3_client(
        vault.env["EVAULT_S3_ENDPOINT"],
        vault.env["EVAULT_S3_ACCESS_KEY"],
        vault.env["EVAULT_S3_SECRET_KEY"],
        "us-east-1",
    )
    listed = s3.list_object_versions(Bucket=vault.env["EVAULT_S3_BUCKET"], Prefix=AUTHORITATIVE_PREFIX)
    versions = listed.get("Versions", [])
    return events, claims, len(versions)


def test_a_record_moves_between_two_running_vaults(
    embedded_s3: EmbeddedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with ExitStack() as stack:
        sender = stack.enter_context(_serve(embedded_s3, tmp_path, "vault-a.example"))
        receiver = stack.enter_context(_serve(embedded_s3, tmp_path, "vault-b.example"))
        origin_id, package = _released(sender, receiver.name)
        (tmp_path / "package.zip").write_bytes(package)
        (tmp_path / "a.pem").write_bytes(sender.pem)
        (tmp_path / "b.pem").write_bytes(receiver.pem)

        # The real command, beside the running receiver.
        command = [sys.executable, "-m", "vault.cli.main", "import", str(tmp_path / "package.zip")]
        command += ["--org", receiver.org_id, "--trusted-key", str(tmp_path / "a.pem"), "--json"]
        done = subprocess.run(command, env=receiver.env, capture_output=True, text=True, timeout=180, check=False)
        assert done.returncode == 0, done.stderr
        imported = json.loads(done.stdout)
        envelope_id = imported["envelope_id"]
        files = _files(package)

        with httpx.Client(base_url=receiver.api, timeout=60) as http:
            shown = http.get(f"{API}/envelopes/{envelope_id}", headers=receiver.headers).json()
            assert (shown["vault_state"], shown["status"]) == ("vaulted", "completed")
            certificate = http.get(f"{API}/envelopes/{envelope_id}/vault/certificate", headers=receiver.headers)
            assert certificate.status_code == 200, certificate.text
            compliance = http.get(f"{API}/envelopes/{envelope_id}/compliance", headers=receiver.headers).json()
        checked = verify_certificate(certificate.content, receiver.pem)
        provenance = checked.certificate["imported_from"]
        assert provenance["key_id"] == key_id_of(sender.key().public_key)
        assert provenance["log_origin"] == f"vault-a.example/log/{sender.org_id}"
        assert provenance["envelope_id"] == origin_id and provenance["vault_id"] == "vault-a.example"
        assert provenance["release_receipt_sha256"] == hashlib.sha256(files["receipts/release.json"]).hexdigest()
        release_entry = json.loads(files["proof/bundle.json"])["events"][-1]
        assert provenance["release"]["leaf_index"] == release_entry["leaf_index"]
        assert provenance["checkpoint"]["note"] == json.loads(files["proof/bundle.json"])["checkpoint"]
        sent_copy = json.loads(files["certificate/certificate.json"])["certificate"]["authoritative_copy"]
        sent = [d["sha256"] for d in sent_copy["documents"]]
        kept = checked.certificate["authoritative_copy"]["documents"]
        assert [d["sha256"] for d in kept] == sent and all(d["lock_mode"] == "COMPLIANCE" for d in kept)
        assert kept[0]["bucket"] == receiver.env["EVAULT_S3_BUCKET"]
        assert checked.bundle.events[0]["type"] == "envelope.imported"
        assert compliance["verdict"] == "pass", compliance
        # The receiver's own verifier re-reads the imported objects and re-derives the rows from the chain.
        verify = [sys.executable, "-m", "vault.cli.main", "verify", "--org", receiver.org_id]
        checked_all = subprocess.run(verify, env=receiver.env, capture_output=True, text=True, timeout=300, check=False)
        assert checked_all.returncode == 0, checked_all.stdout[-3000:] + checked_all.stderr[-3000:]

        # Refusals, in process against the receiver's database and bucket: each by name, none writes anything.
        for name, value in receiver.env.items():
            monkeypatch.setenv(name, value)

        def refused(data: bytes, pem: str = "a.pem") -> str:
            (tmp_path / "bad.zip").write_bytes(data)
            capsys.readouterr()
            code = evault_main(
                ["import", str(tmp_path / "bad.zip"), "--org", receiver.org_id, "--trusted-key", str(tmp_path / pem)]
            )
            err = capsys.readouterr().err
            assert code == 1, err
            return err.split(":")[1].strip()

        before = _written(receiver)
        key = sender.key()
        pdf = next(p for p in files if p.startswith("documents/"))
        offset = package.index(files[pdf]) + 400
        proof = json.loads(files["proof/bundle.json"])
        hashes = proof["events"][0]["inclusion_proof"]
        hashes[0] = base64.b64encode(_flip(base64.b64decode(hashes[0]), 0)).decode()
        receipt = json.loads(files["receipts/release.json"])
        receipt["receipt"]["issued_at"] = "2020-01-01T00:00:00Z"
        manifest = json.loads(files["manifest.json"])
        manifest["signature"]["value"] = base64.b64encode(
            _flip(base64.b64decode(manifest["signature"]["value"]), 5)
        ).decode()
        cases = {
            "a byte of a PDF": (_flip(package, offset), "Import.HashMismatch"),
            "a byte of a PDF, manifest signed again": (
                _resigned(key, {**files, pdf: _flip(files[pdf], 400)}),
                "Import.HashMismatch",
            ),
            "a byte of a proof": (
                _resigned(key, {**files, "proof/bundle.json": json.dumps(proof).encode()}),
                "Import.ProofInvalid",
            ),
            "a field of the receipt": (
                _resigned(key, {**files, "receipts/release.json": json.dumps(receipt).encode()}),
                "Import.BadSignature",
            ),
            "the manifest's signature": (
                canonical_zip({**files, "manifest.json": json.dumps(manifest).encode()}),
                "Import.BadSignature",
            ),
        }
        for case, (data, code) in cases.items():
            assert refused(data) == code, case
        assert refused(package, "b.pem") == "Import.UntrustedKey"
        assert refused(package) == "Import.AlreadyImported"
        monkeypatch.setenv("EVAULT_CUSTODIAN_ID", "vault-c.example")  # a vault the record was not released to
        assert refused(package) == "Import.NotAddressed"
        assert _written(receiver) == before


# --- still released: the release is the head at a later checkpoint ----------------------------------------------


def _later_bundle(client: Any, headers: dict[str, str], envelope_id: str) -> dict[str, Any]:
    """The envelope's proof bundle at a checkpoint signed after the log grew by another envelope's events."""
    create_envelope(client, headers)
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200
    response = client.get(f"{API}/envelopes/{envelope_id}/proof", headers=headers)
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    return bundle


def _size(note: str) -> int:
    return int(note.split("\n")[1])


def test_a_release_is_shown_still_the_head_at_a_later_checkpoint(
    client: Any, runtime: Runtime, tenant: Any, tmp_path: Path
) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf(pages=1)).status_code == 201
    body = {"reason": "transfer", "transferee": {"vault_id": "vault-b.example"}}
    assert client.post(f"{API}/envelopes/{envelope_id}/vault-out", json=body, headers=headers).status_code == 200
    receipt = client.get(f"{API}/envelopes/{envelope_id}/release-receipt", headers=headers).json()
    bundle = _later_bundle(client, headers, envelope_id)
    first, second = _size(receipt["receipt"]["checkpoints"][0]["note"]), _size(bundle["checkpoint"])
    assert first < second
    proof = client.get(f"{API}/log/proof/consistency", params={"first": first, "second": second}, headers=headers)
    keys = client.get("/.well-known/evault/keys").json()["keys"]
    pem = str(next(k["pem"] for k in keys if k["use"] == "checkpoint"))

    work = tmp_path / "auditor"
    work.mkdir()
    for name, content in (
        ("receipt.json", json.dumps(receipt)),
        ("bundle.json", json.dumps(bundle)),
        ("proof.json", proof.text),
        ("vault.pem", pem),
    ):
        (work / name).write_text(content)
    command = [sys.executable, "-m", "vault.cli.main", "receipt", "verify", "receipt.json", "--public-key", "vault.pem"]
    command += ["--against", "bundle.json", "--consistency-proof", "proof.json"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("EVAULT_")}, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "still released" in done.stdout and f"size {second}" in done.stdout and "consistency proven" in done.stdout

    verified = verify_receipt(json.dumps(receipt), pem.encode())
    with pytest.raises(LogError):  # a consistency proof that is not the log's
        bad = json.loads(proof.text)
        bad["hashes"][0] = base64.b64encode(_flip(base64.b64decode(bad["hashes"][0]), 3)).decode()
        check_still_released(verified, json.dumps(bundle), pem.encode(), consistency_proof=json.dumps(bad))
    other = _later_bundle(client, headers, create_envelope(client, headers))
    with pytest.raises(ReceiptInvalid) as foreign:
        check_still_released(verified, json.dumps(other), pem.encode())
    assert foreign.value.code == "Receipt.Inconsistent"

    # An event after the release (here a failed check's record): the release is no longer the head.
    with runtime.db.session() as session:
        append_event(
            session,
            actor=Actor(org_id),
            envelope_id=envelope_id,
            event_type=CHECK_FAILED,
            occurred_at=utcnow(),
            data={"verdict": "fail", "failed": []},
        )
    later = _later_bundle(client, headers, envelope_id)
    with pytest.raises(ReceiptInvalid) as superseded:
        check_still_released(verified, json.dumps(later), pem.encode())
    assert superseded.value.code == "Receipt.ReleaseSuperseded"
    assert superseded.value.details["followed"] == ["compliance.check_failed"]
    (work / "later.json").write_text(json.dumps(later))
    command[command.index("bundle.json")] = "later.json"
    done = subprocess.run(command[:-2], env=env, cwd=work, capture_output=True, text=True, timeout=120, check=False)
    assert (
        done.returncode == 2 and "Receipt.ReleaseSuperseded" in done.stderr and "compliance.check_failed" in done.stderr
    )
    # The earlier bundle still shows the past truthfully: at its checkpoint nothing had followed.
    assert check_still_released(verified, json.dumps(bundle), pem.encode()).checkpoint.size == second


def test_two_imports_of_one_release_at_once_have_one_winner(
    client: Any, runtime: Runtime, tenant: Any, make_key: Any
) -> None:
    """Into two organisations of one vault at once (the release names this vault): the claim's unique index lets
    one import through; the other is Import.AlreadyImported and leaves no envelope, event or object behind."""
    _, headers = tenant
    vault_id = runtime.settings.evidence.custodian_id
    keys = client.get("/.well-known/evault/keys").json()["keys"]
    pem = str(next(k["pem"] for k in keys if k["use"] == "checkpoint")).encode()
    for _ in range(2):
        receivers = [make_key()[0], make_key()[0]]  # fresh each time: the loser must hold nothing at all
        envelope_id = create_envelope(client, headers)
        assert upload(client, headers, envelope_id, signed_pdf()).status_code == 201
        body = {"reason": "transfer", "transferee": {"vault_id": vault_id}}
        assert client.post(f"{API}/envelopes/{envelope_id}/vault-out", json=body, headers=headers).status_code == 200
        package = client.get(f"{API}/envelopes/{envelope_id}/export-package", headers=headers).content
        export = verify_export(package, [pem], vault_id, [])
        answers = together(*(lambda o=org, e=export: import_package(runtime.custody(), o, e) for org in receivers))
        won = [a for a in answers if not isinstance(a, Exception)]
        lost = [a for a in answers if isinstance(a, Exception)]
        assert len(won) == 1 and len(lost) == 1, answers
        assert isinstance(lost[0], Conflict) and lost[0].code == "Import.AlreadyImported"
        with runtime.db.read_session() as session:
            claims = session.exec(select(EnvelopeImport).where(EnvelopeImport.origin_envelope_id == envelope_id))
            assert [(c.envelope_id, c.recorded_at is not None) for c in claims] == [(won[0].id, True)]
            imported = session.exec(select(Event).where(Event.event_type == "envelope.imported")).all()
            assert won[0].id in {e.envelope_id for e in imported}
        prefix = f"{AUTHORITATIVE_PREFIX}{won[0].org_id}/{won[0].id}/"
        assert len(list(runtime.custody().authoritative.list_entries(prefix))) == 1
        loser = next(org for org in receivers if org != won[0].org_id)
        assert list(runtime.custody().authoritative.list_entries(f"{AUTHORITATIVE_PREFIX}{loser}/")) == []


def test_the_rebuild_replays_an_import_into_the_rows_the_import_wrote(
    client: Any, runtime: Runtime, tenant: Any, make_key: Any
) -> None:
    """The ledger is the truth: replaying the envelope.imported entry alone gives back the envelope, its record
    and documents, and the import's claim, as the import wrote them."""
    _, headers = tenant
    vault_id = runtime.settings.evidence.custodian_id
    receiver = make_key()[0]
    keys = client.get("/.well-known/evault/keys").json()["keys"]
    pem = str(next(k["pem"] for k in keys if k["use"] == "checkpoint")).encode()
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, signed_pdf()).status_code == 201
    body = {"reason": "transfer", "transferee": {"vault_id": vault_id}}
    assert client.post(f"{API}/envelopes/{envelope_id}/vault-out", json=body, headers=headers).status_code == 200
    package = client.get(f"{API}/envelopes/{envelope_id}/export-package", headers=headers).content
    imported = import_package(runtime.custody(), receiver, verify_export(package, [pem], vault_id, []))
    with runtime.db.read_session() as session:
        event = session.exec(select(Event).where(Event.envelope_id == imported.id)).one()
        record = session.exec(select(VaultRecord).where(VaultRecord.envelope_id == imported.id)).one()
        documents = session.exec(select(VaultedDocument).where(VaultedDocument.record_id == record.id)).all()
        claim = session.get(EnvelopeImport, imported.id)
        value = json.loads(event.entry)
    entry = Entry(
        org_id=receiver,
        index=event.leaf_index,
        type=value["type"],
        time=parse_time(value["time"]),
        envelope_id=imported.id,
        key_id=None,
        data=value["data"],
    )
    rows = Rows()
    step_for(entry)(rows, entry)
    envelope = rows.envelopes[imported.id]
    fields = ("kind", "title", "status", "vault_state", "secured_party", "parties", "external_id")
    assert [getattr(envelope, f) for f in fields] == [getattr(imported, f) for f in fields]
    replayed = rows.records[imported.id]
    for name in ("id", "source", "vaulted_by"):
        assert getattr(replayed, name) == getattr(record, name), name
    for name in ("retain_until", "vaulted_at"):  # SQLite reads datetimes back without their zone
        assert as_utc(getattr(replayed, name)) == as_utc(getattr(record, name)), name
    shown = ("id", "position", "sha256", "size", "s3_bucket", "s3_key", "s3_version_id", "signatures")
    assert sorted(tuple(getattr(d, f) for f in shown) for d in rows.documents.values()) == sorted(
        tuple(getattr(d, f) for f in shown) for d in documents
    )
    assert claim is not None and len(rows.imports) == 1
    again = rows.imports[0]
    for name in ("envelope_id", "org_id", "origin_log", "origin_envelope_id", "release_leaf_index", "origin_key_id"):
        assert getattr(again, name) == getattr(claim, name), name
    assert again.release_receipt_sha256 == claim.release_receipt_sha256
    assert as_utc(again.retain_until) == as_utc(claim.retain_until)
