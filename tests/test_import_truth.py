"""The ledger is the truth for imports: an ``envelope_import`` row is re-derived from the ``envelope.imported``
entry the import appended, so a claim edited, deleted or planted in SQL is named by ``evault verify`` (exit 2),
and a clean import verifies clean (compliance/conditions/import_projection.py). An import that died after its
puts is in flight until the grace period ends (its objects are not ``Object.Unrecorded``), then named as
``Import.ClaimUnfinished`` until the package is imported again (compliance/verifier/claims.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from compliance.evidence_package.import_check import verify_export
from compliance.verifier import Options, fix_scope, verify
from compliance.verifier.findings import Finding
from storage.ids import new_id, utcnow
from storage.keys import authoritative_key
from storage.models import EnvelopeImport
from tests.export_packages import export_package, release_to_self, vault_pem
from tests.pdf_factory import make_pdf
from vault import imports
from vault.runtime import Runtime

Evault = Callable[..., tuple[int, str, str]]


def _imported(client: Any, runtime: Runtime, headers: dict[str, str], evault: Evault, org_id: str, key: Path) -> str:
    """A record of this vault released to itself and imported into ``org_id`` with ``evault import``: its new id."""
    package = export_package(client, headers, release_to_self(client, runtime, headers, make_pdf(text=new_id("doc"))))
    path = key.parent / "package.zip"
    path.write_bytes(package)
    code, out, err = evault("import", str(path), "--org", org_id, "--trusted-key", str(key), "--json")
    assert code == 0, err
    envelope_id: str = json.loads(out)["envelope_id"]
    return envelope_id


def _findings(runtime: Runtime, **scope: Any) -> list[Finding]:
    chosen = fix_scope(runtime.sources(), **scope) if scope else None
    return verify(runtime.sources(), chosen, options=Options(concurrency=2, record=False)).findings


def _imports(found: list[Finding]) -> dict[tuple[str, str], Finding]:
    """(code, envelope id) -> finding, for the import findings only."""
    return {(f.code, str(f.details["envelope_id"])): f for f in found if f.code.startswith("Import.")}


def _claim(runtime: Runtime, envelope_id: str) -> EnvelopeImport:
    with runtime.db.read_session() as session:
        claim = session.get(EnvelopeImport, envelope_id)
    assert claim is not None
    return claim


def _edit(runtime: Runtime, envelope_id: str, **fields: Any) -> None:
    with runtime.db.session() as session:
        claim = session.get(EnvelopeImport, envelope_id)
        assert claim is not None
        for name, value in fields.items():
            setattr(claim, name, value)
        session.add(claim)


def test_an_import_claim_edited_in_sql_is_named_by_evault_verify(
    client: Any, runtime: Runtime, tenant: Any, make_key: Any, evault: Evault, tmp_path: Path
) -> None:
    _, headers = tenant
    receiver, elsewhere = make_key()[0], make_key()[0]
    key = vault_pem(client, tmp_path / "vault.pem")
    untouched, fields, moved, dates = (_imported(client, runtime, headers, evault, receiver, key) for _ in range(4))
    clean = _findings(runtime)
    assert clean == [], clean
    code, out, err = evault("verify", "--concurrency", "2")
    assert code == 0, out + err

    claim = _claim(runtime, fields)
    _edit(runtime, fields, origin_key_id="sha256:" + "0" * 64, release_leaf_index=claim.release_leaf_index + 1)
    _edit(runtime, moved, org_id=elsewhere)  # the import now claims to belong to another organisation
    _edit(runtime, dates, retain_until=utcnow() + timedelta(days=3650), recorded_at=utcnow() + timedelta(days=1))
    found = _imports(_findings(runtime))
    assert set(found) == {("Import.Edited", fields), ("Import.Edited", moved), ("Import.Edited", dates)}, found
    changed = found[("Import.Edited", fields)].details["changed"]
    assert changed["origin_key_id"] == {"row": "sha256:" + "0" * 64, "ledger": claim.origin_key_id}
    assert changed["release_leaf_index"]["ledger"] == claim.release_leaf_index
    assert set(changed) == {"origin_key_id", "release_leaf_index"}
    moved_finding = found[("Import.Edited", moved)]
    assert moved_finding.details["org_id"] == elsewhere
    assert moved_finding.details["changed"]["org_id"] == {"row": elsewhere, "ledger": receiver}
    assert set(found[("Import.Edited", dates)].details["changed"]) == {"retain_until", "recorded_at"}
    assert untouched not in {envelope_id for _, envelope_id in found}

    # A run scoped to the envelope still compares its claim; the command exits 2 and names the code.
    assert set(_imports(_findings(runtime, envelopes=[fields]))) == {("Import.Edited", fields)}
    code, out, err = evault("verify", "--concurrency", "2")
    assert code == 2 and "Import.Edited" in out + err, out + err


def test_an_import_claim_deleted_in_sql_is_named_by_evault_verify(
    client: Any, runtime: Runtime, tenant: Any, make_key: Any, evault: Evault, tmp_path: Path
) -> None:
    """Without its claim, the same release could be imported again: the entry still says it was."""
    _, headers = tenant
    receiver = make_key()[0]
    key = vault_pem(client, tmp_path / "vault.pem")
    deleted = _imported(client, runtime, headers, evault, receiver, key)
    assert _findings(runtime) == []
    with runtime.db.session() as session:
        session.delete(session.get(EnvelopeImport, deleted))
    found = _imports(_findings(runtime))
    assert set(found) == {("Import.Deleted", deleted)}, found
    assert found[("Import.Deleted", deleted)].details["org_id"] == receiver
    code, out, err = evault("verify", "--concurrency", "2")
    assert code == 2 and "Import.Deleted" in out + err, out + err


def test_an_import_claim_planted_in_sql_is_named_by_evault_verify(
    client: Any, runtime: Runtime, tenant: Any, make_key: Any, evault: Evault, tmp_path: Path
) -> None:
    """A recorded claim no entry records (for no envelope, or for one this vault never imported) is a finding; a
    claim not yet recorded and naming no envelope is an import in flight, and is not (one naming an envelope is
    not in flight: the objects beside that envelope's are still checked)."""
    org_id, headers = tenant
    receiver = make_key()[0]
    key = vault_pem(client, tmp_path / "vault.pem")
    imported = _imported(client, runtime, headers, evault, receiver, key)
    native = release_to_self(client, runtime, headers, make_pdf(text="Vaulted here, never imported"))
    assert _findings(runtime) == []
    real = _claim(runtime, imported)
    now = utcnow()

    def planted(envelope_id: str, owner: str, leaf: int, recorded: bool) -> EnvelopeImport:
        return EnvelopeImport(
            envelope_id=envelope_id,
            org_id=owner,
            origin_log=real.origin_log,
            origin_envelope_id=new_id("env"),
            release_leaf_index=leaf,
            origin_key_id=real.origin_key_id,
            release_receipt_sha256="ab" * 32,
            claimed_at=now,
            retain_until=now + timedelta(days=1),
            recorded_at=now if recorded else None,
        )

    nowhere, in_flight = new_id("env"), new_id("env")
    with runtime.db.session() as session:
        session.add(planted(nowhere, receiver, 10_001, recorded=True))  # blocks that release's import
        session.add(planted(native, org_id, 10_002, recorded=False))  # names an envelope that was not imported
        session.add(planted(in_flight, receiver, 10_003, recorded=False))
    # An object planted beside the native envelope's: its planted claim is no import in flight, hiding nothing.
    stray = authoritative_key(org_id, native, 9, "ab" * 32)
    runtime.authoritative.put_write_once(stray, b"%PDF-1.4 planted", retain_until=now + timedelta(days=1))
    every = _findings(runtime)
    assert [f.details["key"] for f in every if f.code == "Object.Unrecorded"] == [stray], every
    found = _imports(every)
    assert set(found) == {("Import.Unlogged", nowhere), ("Import.Unlogged", native)}, found
    assert found[("Import.Unlogged", nowhere)].details["release_leaf_index"] == 10_001
    code, out, err = evault("verify", "--concurrency", "2")
    assert code == 2 and "Import.Unlogged" in out + err, out + err
    with runtime.db.read_session() as session:
        assert len(session.exec(select(EnvelopeImport)).all()) == 4  # the verifier reads; it changes no claim


def _dies(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("the process died between its write-once puts and its record")


def test_an_import_that_died_after_its_puts_is_named_once_its_claim_is_stale(
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
    package = export_package(client, headers, release_to_self(client, runtime, headers, make_pdf(text="Died")))
    export = verify_export(package, [key.read_bytes()], runtime.settings.evidence.custodian_id, [])
    with monkeypatch.context() as dying:
        dying.setattr(imports, "_record", _dies)
        with pytest.raises(RuntimeError):
            imports.import_package(runtime.custody(), receiver, export)
    with runtime.db.read_session() as session:
        (claim,) = session.exec(select(EnvelopeImport).where(EnvelopeImport.org_id == receiver)).all()
    assert claim.recorded_at is None
    prefix = f"authoritative/{receiver}/{claim.envelope_id}/"
    listed = runtime.s3_client.list_object_versions(Bucket=runtime.authoritative.bucket, Prefix=prefix)
    assert len(listed.get("Versions", [])) == len(export.documents) > 0  # its objects are in the bucket

    # Within the grace period it is an import in flight: its objects are not Object.Unrecorded.
    assert _findings(runtime) == []
    code, out, err = evault("verify", "--concurrency", "2")
    assert code == 0, out + err

    _edit(runtime, claim.envelope_id, claimed_at=utcnow() - timedelta(hours=1))  # EVAULT_CLAIM_GRACE_SECONDS passes
    found = _findings(runtime)
    assert [(f.code, f.details["envelope_id"]) for f in found] == [("Import.ClaimUnfinished", claim.envelope_id)]
    details = found[0].details
    assert (details["org_id"], details["origin_log"], details["release_leaf_index"]) == (
        receiver,
        claim.origin_log,
        claim.release_leaf_index,
    )
    code, out, err = evault("verify", "--concurrency", "2")
    assert code == 2 and "Import.ClaimUnfinished" in out + err, out + err

    # Imported again, the package takes its claim over and records the objects the dead import wrote.
    path = tmp_path / "package.zip"
    path.write_bytes(package)
    code, out, err = evault("import", str(path), "--org", receiver, "--trusted-key", str(key), "--json")
    assert code == 0, err
    assert json.loads(out)["envelope_id"] == claim.envelope_id
    assert _findings(runtime) == []
