"""A vault that holds imported records, rebuilt from its WORM bucket alone (docs/rebuild.md, docs/vault-transfer.md).

One vault is both ends of the hand-off, as in tests/export_packages.py: organisation A releases a record for a
transfer to this vault, B imports it with ``evault import``, copies it, extends its retention and releases it
on to this vault again, and C imports B's release in turn (an import of an import). The database is then thrown
away. Rebuilt from the bucket, ``evault verify`` is clean (the import claims re-derived from their
``envelope.imported`` entries among its checks), each ``envelope_import`` row, vault record, document and copy
is what the import and the later steps wrote, and each envelope's proof bundle and certificate are the same.
Restored with a backup, each claim is the original (when it was claimed included), and an import that died
after writing its objects gets its claim back, so importing its package again records those objects.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlmodel import SQLModel, col, select

from compliance.evidence_package.import_check import verify_export
from compliance.verifier import verify_vault
from storage.ids import as_utc, iso
from storage.models import CopyRecord, EnvelopeImport, VaultedDocument, VaultRecord
from tests.export_packages import export_package, release_to_self, vault_pem
from tests.helpers import API
from tests.pdf_factory import make_pdf
from tests.signed_pdfs import valid as signed_pdf
from tests.test_rebuild import (  # noqa: F401 (fixtures)
    _evidence,
    _signed_roots,
    fresh_database_url,
    into_fresh_database,
    with_key_hashes,
)
from vault import imports
from vault.api.app import create_app
from vault.imports import import_package
from vault.runtime import Runtime

pytestmark = pytest.mark.s3

Evault = Callable[..., tuple[int, str, str]]

# The one field of an import claim its entry does not hold: when the claim was taken, before the objects were put.
NOT_LOGGED = {"claimed_at"}


def _released_on(client: TestClient[Any], runtime: Runtime, headers: dict[str, str], envelope_id: str) -> None:
    """An imported record released on, for a transfer to this vault again."""
    body = {"reason": "transfer", "transferee": {"vault_id": runtime.settings.evidence.custodian_id}}
    out = client.post(f"{API}/envelopes/{envelope_id}/vault-out", json=body, headers=headers)
    assert out.status_code == 200, out.text


def _imported(evault: Evault, tmp_path: Path, package: bytes, org_id: str, key: Path) -> str:
    path = tmp_path / f"package-{org_id}.zip"
    path.write_bytes(package)
    code, out, err = evault("import", str(path), "--org", org_id, "--trusted-key", str(key), "--json")
    assert code == 0, err
    envelope_id: str = json.loads(out)["envelope_id"]
    return envelope_id


def _row(row: SQLModel, leave_out: set[str] | None = None) -> dict[str, Any]:
    """A row's columns, times in the log's notation (SQLite reads them back without their zone)."""
    values = row.model_dump()
    return {k: iso(as_utc(v)) if hasattr(v, "tzinfo") else v for k, v in values.items() if k not in (leave_out or ())}


def _claims(runtime: Runtime, leave_out: set[str] | None = None) -> list[dict[str, Any]]:
    with runtime.db.read_session() as session:
        claims = session.exec(select(EnvelopeImport)).all()
        return sorted((_row(c, leave_out) for c in claims), key=lambda r: r["envelope_id"])


def _imports(runtime: Runtime, envelope_ids: list[str]) -> dict[str, Any]:
    """What an import and the steps after it wrote: the claim (but when it was claimed), the record, its
    documents and copies."""
    with runtime.db.read_session() as session:
        records = session.exec(select(VaultRecord).where(col(VaultRecord.envelope_id).in_(envelope_ids))).all()
        documents = session.exec(
            select(VaultedDocument).where(col(VaultedDocument.record_id).in_([r.id for r in records]))
        )
        copies = session.exec(select(CopyRecord).where(col(CopyRecord.envelope_id).in_(envelope_ids)))
        found = {
            "records": sorted((_row(r) for r in records), key=lambda r: r["id"]),
            "documents": sorted((_row(d) for d in documents), key=lambda r: r["id"]),
            "copies": sorted((_row(c) for c in copies), key=lambda r: r["id"]),
        }
    return {"claims": _claims(runtime, NOT_LOGGED), **found}


def test_a_vault_that_imported_records_is_rebuilt_from_its_bucket(
    runtime: Runtime,
    client: TestClient[Any],
    tenant: tuple[str, dict[str, str]],
    make_key: Callable[..., tuple[str, str]],
    evault: Evault,
    tmp_path: Path,
    into_fresh_database: Callable[..., tuple[Runtime, str]],  # noqa: F811
) -> None:
    org_a, a = tenant
    org_b, raw_b = make_key()
    org_c, raw_c = make_key()
    b, c = {"X-API-Key": raw_b}, {"X-API-Key": raw_c}
    key = vault_pem(client, tmp_path / "vault.pem")

    origin = release_to_self(client, runtime, a, signed_pdf())
    imported = _imported(evault, tmp_path, export_package(client, a, origin), org_b, key)
    # B does what the imported record allows: a copy, a longer retention, and a release on for a transfer.
    assert client.get(f"{API}/envelopes/{imported}/vault/copy/signed-url", headers=b).status_code == 200
    later = iso(dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=3))  # the vault's default: 1
    extended = client.post(f"{API}/envelopes/{imported}/retention", json={"retain_until": later}, headers=b)
    assert extended.status_code == 200, extended.text
    _released_on(client, runtime, b, imported)
    again = _imported(evault, tmp_path, export_package(client, b, imported), org_c, key)
    assert client.get(f"{API}/envelopes/{again}/vault/copy/signed-url", headers=c).status_code == 200
    for who in (a, b, c):
        assert client.post(f"{API}/log/checkpoint", headers=who).status_code == 200

    envelopes = [(origin, a), (imported, b), (again, c)]
    before = {e: _evidence(client, e, who) for e, who in envelopes}
    assert before[imported]["certificate"]["certificate"]["imported_from"]["envelope_id"] == origin
    assert before[again]["certificate"]["certificate"]["imported_from"]["envelope_id"] == imported
    rows = _imports(runtime, [imported, again])
    assert len(rows["claims"]) == 2 and len(rows["copies"]) == 2
    roots = _signed_roots(runtime)
    assert set(roots) == {org_a, org_b, org_c}

    rebuilt, out = into_fresh_database("rebuild", "--from-bucket")
    assert all(org in out for org in roots), out
    try:
        report = verify_vault(rebuilt.sources())
        assert report["clean"], report["findings"]
        assert _signed_roots(rebuilt) == roots
        assert _imports(rebuilt, [imported, again]) == rows
        with_key_hashes(rebuilt, runtime)
        with TestClient(create_app(rebuilt)) as rebuilt_client:
            after = {e: _evidence(rebuilt_client, e, who) for e, who in envelopes}
        for envelope_id in before:
            assert after[envelope_id] == before[envelope_id], envelope_id
    finally:
        rebuilt.close()


def _dies(*args: Any, **kwargs: Any) -> Any:
    """An import that dies between its write-once puts and its record."""
    raise RuntimeError("the process died")


def test_a_restore_lays_back_when_each_import_was_claimed_and_an_import_that_died(
    runtime: Runtime,
    client: TestClient[Any],
    tenant: tuple[str, dict[str, str]],
    make_key: Callable[..., tuple[str, str]],
    evault: Evault,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    into_fresh_database: Callable[..., tuple[Runtime, str]],  # noqa: F811
) -> None:
    _, a = tenant
    receiver, raw = make_key()
    key = vault_pem(client, tmp_path / "vault.pem")
    vault_id = runtime.settings.evidence.custodian_id
    package = export_package(client, a, release_to_self(client, runtime, a, make_pdf(text="Imported")))
    _imported(evault, tmp_path, package, receiver, key)
    package = export_package(client, a, release_to_self(client, runtime, a, make_pdf(text="Died on the way")))
    export = verify_export(package, [key.read_bytes()], vault_id, [])
    with monkeypatch.context() as dying:
        dying.setattr(imports, "_record", _dies)
        with pytest.raises(RuntimeError):
            import_package(runtime.custody(), receiver, export)
    claims = _claims(runtime)
    (died,) = (c["envelope_id"] for c in claims if c["recorded_at"] is None)
    for who in (a, {"X-API-Key": raw}):
        assert client.post(f"{API}/log/checkpoint", headers=who).status_code == 200
    code, _, err = evault("backup", "--to", str(tmp_path / "backup"))
    assert code == 0, err

    restored, _ = into_fresh_database("restore", "--from", str(tmp_path / "backup"))
    try:
        assert _claims(restored) == claims
        # Imported again, the package takes its claim over: the objects the dead import wrote are recorded.
        assert import_package(restored.custody(), receiver, export).id == died
        report = verify_vault(restored.sources())
        assert report["clean"], report["findings"]
    finally:
        restored.close()
