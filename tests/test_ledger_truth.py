"""The ledger is the source of truth: a row the envelope's chain does not support, planted through SQL, is named
by the verifier (exit 2), fails the live check (condition 6) and never gets a PASS certificate.

Planted as an operator with database rights would: a vault-out written only in SQL, a secured party edited
before vault-in, an assignee changed after it, and a copy row with no ledger event.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import select

from compliance.conditions.projection import Rows, compare, fold
from compliance.verifier import Options, fix_scope, verify
from compliance.verifier.findings import Finding
from storage.ids import new_id, utcnow
from storage.models import ApiKey, CopyRecord, Envelope, VaultedDocument, VaultRecord
from tests.helpers import API, create_envelope, disarm_triggers, upload
from tests.pdf_factory import make_pdf
from vault.cli.main import main
from vault.runtime import Runtime
from vault.tenancy import hash_key


def _vaulted(client: Any, headers: dict[str, str], copy: bool = False) -> str:
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf(text=f"Loan {envelope_id}")).status_code == 201
    if copy:
        assert client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers).status_code == 200
    return envelope_id


def _check(client: Any, headers: dict[str, str], envelope_id: str) -> dict[str, Any]:
    response = client.get(f"{API}/envelopes/{envelope_id}/compliance?checkpoint=now", headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _certificate(client: Any, headers: dict[str, str], envelope_id: str) -> dict[str, Any]:
    response = client.get(f"{API}/envelopes/{envelope_id}/vault/certificate", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()["certificate"]
    return body


def _named(findings: list[Finding]) -> dict[str, set[str]]:
    """Finding code -> the envelopes it names."""
    out: dict[str, set[str]] = {}
    for finding in findings:
        out.setdefault(finding.code, set()).add(str(finding.details.get("envelope_id")))
    return out


def _plant_release(runtime: Runtime, envelope_id: str, key_id: str) -> None:
    with runtime.db.session() as session:
        record = session.exec(select(VaultRecord).where(VaultRecord.envelope_id == envelope_id)).one()
        record.released_at, record.released_by, record.release_reason = utcnow(), key_id, "transfer"
        record.release_details = {"transferee": {"vault_id": "vault.elsewhere.example"}}
        envelope = session.get(Envelope, envelope_id)
        assert envelope is not None
        envelope.vault_state = "released"
        session.add_all([record, envelope])


def _plant_secured_party(runtime: Runtime, envelope_id: str) -> None:
    with runtime.db.session() as session:
        envelope = session.get(Envelope, envelope_id)
        assert envelope is not None
        envelope.secured_party = {"name": "Other Bank", "id": "bank-2"}
        session.add(envelope)


def _plant_copy(runtime: Runtime, envelope_id: str, key_id: str) -> None:
    with runtime.db.session() as session:
        record = session.exec(select(VaultRecord).where(VaultRecord.envelope_id == envelope_id)).one()
        doc = session.exec(select(VaultedDocument).where(VaultedDocument.record_id == record.id)).one()
        copy_id = new_id("cpy")
        session.add(
            CopyRecord(
                id=copy_id,
                org_id=record.org_id,
                envelope_id=envelope_id,
                document_id=doc.id,
                source_sha256=doc.sha256,
                sha256="ab" * 32,
                size=1,
                s3_bucket=runtime.copies.bucket,
                s3_key=f"copies/{record.org_id}/{envelope_id}/{copy_id}.pdf",
                s3_version_id="planted",
                issued_at=utcnow(),
                issued_by=key_id,
            )
        )


def _key_id(runtime: Runtime, envelope_id: str) -> str:
    with runtime.db.read_session() as session:
        record = session.exec(select(VaultRecord).where(VaultRecord.envelope_id == envelope_id)).one()
        return record.vaulted_by


def test_rows_the_chain_does_not_support_are_named_by_the_verifier_the_check_and_the_certificate(
    client: Any, runtime: Runtime, tenant: Any, vault_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, headers = tenant
    # An honest vault in every state verifies clean: vaulted with a copy, released, voided, only created.
    _vaulted(client, headers, copy=True)
    released = _vaulted(client, headers)
    out = {"reason": "transfer", "transferee": {"vault_id": "vault.other.example"}}
    assert client.post(f"{API}/envelopes/{released}/vault-out", json=out, headers=headers).status_code == 200
    voided = create_envelope(client, headers)
    assert client.post(f"{API}/envelopes/{voided}/void", json={"reason": "x"}, headers=headers).status_code == 200
    create_envelope(client, headers)
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200
    clean = verify(runtime.sources(), options=Options(concurrency=2, record=False))
    assert clean.clean, clean.findings
    assert clean.counts["envelopes"] == 4
    assert _check(client, headers, released)["verdict"] == "released"  # no longer maintained: says so

    release, before, after, copy = (
        _vaulted(client, headers),
        create_envelope(client, headers),
        *(_vaulted(client, headers) for _ in range(2)),
    )
    key_id = _key_id(runtime, release)
    _plant_release(runtime, release, key_id)
    _plant_secured_party(runtime, before)  # before vault-in: differs from envelope.created
    _plant_secured_party(runtime, after)  # after vault-in: an assignee change with no event
    _plant_copy(runtime, copy, key_id)
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200

    found = verify(runtime.sources(), options=Options(concurrency=2, record=False)).findings
    named = _named(found)
    assert named.get("Record.Unlogged") == {release}, found
    assert named.get("Envelope.Edited") == {release, before, after}, found
    assert named.get("Copy.Unlogged") == {copy}, found
    unlogged = next(f for f in found if f.code == "Record.Unlogged")
    assert unlogged.details["authoritative_copy_id"] and unlogged.details["org_id"]
    edited = next(f for f in found if f.code == "Envelope.Edited" and f.details["envelope_id"] == release)
    assert edited.details["changed"]["vault_state"] == {"row": "released", "ledger": "vaulted"}

    for name, value in vault_env.items():
        monkeypatch.setenv(name, value)
    assert main(["verify", "--concurrency", "2"]) == 2

    expected = {release: "Record.Unlogged", before: "Envelope.Edited", after: "Envelope.Edited", copy: "Copy.Unlogged"}
    for envelope_id, code in expected.items():
        result = _check(client, headers, envelope_id)
        six = next(c for c in result["conditions"] if c["condition"] == "6")
        assert result["verdict"] == "fail" and six["status"] == "fail", (envelope_id, result)
        assert any(reason.startswith(f"{code}: ") for reason in six["reasons"]), six["reasons"]
        assert code in {m["code"] for m in six["evidence"]["unsupported_rows"]}
    # No planted state is certified: the verdict the vault signs is FAIL, and the transfer is not stated.
    for envelope_id in expected:
        certificate = _certificate(client, headers, envelope_id)
        assert certificate["conditions"]["verdict"] == "fail", envelope_id
    assert _certificate(client, headers, release)["vault_out"] is None


def test_a_resumed_or_scoped_run_still_compares_rows(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    planted = _vaulted(client, headers)
    other = _vaulted(client, headers)
    _plant_release(runtime, planted, _key_id(runtime, planted))
    scoped = verify(runtime.sources(), fix_scope(runtime.sources(), envelopes=[other]), options=Options(record=False))
    assert scoped.clean, scoped.findings
    named = _named(
        verify(
            runtime.sources(), fix_scope(runtime.sources(), envelopes=[planted]), options=Options(record=False)
        ).findings
    )
    assert named.get("Record.Unlogged") == {planted}


def test_a_key_row_granted_a_scope_in_sql_is_named_and_fails_the_check(
    client: Any, runtime: Runtime, tenant: Any, make_key: Any
) -> None:
    """Scopes are what the log issued: a scope added in SQL makes a vault-in look authorised to condition 4 only."""
    org_id, headers = tenant
    _, raw = make_key(["envelopes:write", "envelopes:read", "compliance:read"], org_id)
    limited = {"X-API-Key": raw}
    envelope_id = create_envelope(client, limited)
    refused = upload(client, limited, envelope_id, make_pdf())
    assert refused.status_code == 403, refused.text
    with runtime.db.session() as session:
        key = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(raw))).one()
        key.scopes = sorted({*key.scopes, "vault:write"})
        session.add(key)
        stray = ApiKey(
            id=new_id("key"),
            org_id=org_id,
            prefix="lk_planted",
            key_hash="0" * 64,
            name="planted",
            scopes=["vault:release"],
            created_at=utcnow(),
        )
        session.add(stray)
    assert upload(client, limited, envelope_id, make_pdf()).status_code == 201
    result = _check(client, headers, envelope_id)
    six = next(c for c in result["conditions"] if c["condition"] == "6")
    assert result["verdict"] == "fail" and any(r.startswith("Key.Edited: ") for r in six["reasons"]), result
    assert next(c for c in result["conditions"] if c["condition"] == "4")["status"] == "pass"  # the row is believed
    found = verify(runtime.sources(), options=Options(concurrency=2, record=False)).findings
    keys = {(f.code, f.details["key_id"]) for f in found if f.code.startswith("Key.")}
    assert keys == {("Key.Edited", key.id), ("Key.Unlogged", stray.id)}, found
    edited = next(f for f in found if f.code == "Key.Edited")
    assert edited.details["changed"]["scopes"]["row"] == key.scopes


def test_an_assignee_change_the_chain_records_is_the_truth() -> None:
    """The fold follows the chain: after a recorded vault.assignee_changed, only the new assignee is supported."""
    now = utcnow()
    created = {"kind": "paper", "title": "Loan", "external_id": None, "parties": [], "secured_party": {"name": "A"}}
    values = [
        {"type": "envelope.created", "time": "t0", "data": created},
        {"type": "vault.assignee_changed", "time": "t1", "data": {"secured_party": {"name": "B"}}},
    ]
    chain = fold("env_x", values)
    envelope = Envelope(
        id="env_x",
        org_id="org_x",
        kind="paper",
        status="awaiting_upload",
        vault_state="not_vaulted",
        title="Loan",
        parties=[],
        secured_party={"name": "B"},
        meta={},
        created_at=now,
        updated_at=now,
    )
    assert compare(chain, Rows(envelope, None, [], [])) == []
    envelope.secured_party = {"name": "A"}
    (mismatch,) = compare(chain, Rows(envelope, None, [], []))
    assert mismatch.code == "Envelope.Edited" and mismatch.details["changed"]["secured_party"]["ledger"] == {
        "name": "B"
    }


def test_a_transferee_edited_after_a_real_vault_out_is_named_and_never_certified(
    client: Any, runtime: Runtime, tenant: Any
) -> None:
    _, headers = tenant
    envelope_id = _vaulted(client, headers)
    out = {"reason": "transfer", "transferee": {"vault_id": "vault.other.example"}}
    assert client.post(f"{API}/envelopes/{envelope_id}/vault-out", json=out, headers=headers).status_code == 200
    with runtime.db.session() as session:
        disarm_triggers(session, "vault_record")
        record = session.exec(select(VaultRecord).where(VaultRecord.envelope_id == envelope_id)).one()
        record.release_details = {"transferee": {"vault_id": "vault.thief.example"}}
        session.add(record)
    (finding,) = verify(runtime.sources(), options=Options(concurrency=2, record=False)).findings
    assert finding.code == "Record.Edited" and finding.details["envelope_id"] == envelope_id
    assert set(finding.details["changed"]) == {"release_details"}
    result = _check(client, headers, envelope_id)
    assert result["verdict"] == "fail" and "Record.Edited" in {
        m["code"] for m in result["conditions"][5]["evidence"]["unsupported_rows"]
    }
    certificate = _certificate(client, headers, envelope_id)
    assert certificate["conditions"]["verdict"] == "fail"
    assert certificate["vault_out"]["details"]["transferee"] == {"vault_id": "vault.other.example"}
