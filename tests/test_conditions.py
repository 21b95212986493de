"""The six §9-105 conditions: each passes on an honest vault and fails the way a real fault makes it fail."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlmodel import select

from compliance.conditions.evidence import gather
from compliance.conditions.policies import AllOf, overall
from storage.buckets import ensure_bucket
from storage.ids import new_id, utcnow
from storage.keys import authoritative_key
from storage.models import ApiKey, CopyRecord, Envelope, Event, VaultedDocument, VaultRecord
from storage.settings import Settings
from tests.helpers import API, create_envelope, disarm_triggers, upload
from tests.pdf_factory import make_pdf
from vault.api.app import create_app
from vault.evidence_jobs import policy_of
from vault.runtime import Runtime, open_runtime
from vault.tenancy import hash_key


def _check(client: Any, headers: dict[str, str], envelope_id: str, now: bool = True) -> dict[str, Any]:
    query = "?checkpoint=now" if now else ""
    response = client.get(f"{API}/envelopes/{envelope_id}/compliance{query}", headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _status(result: dict[str, Any]) -> dict[str, str]:
    return {c["condition"]: c["status"] for c in result["conditions"]}


def _reasons(result: dict[str, Any], condition: str) -> str:
    return " | ".join(next(c for c in result["conditions"] if c["condition"] == condition)["reasons"])


def _vaulted(client: Any, headers: dict[str, str], copy: bool = True) -> str:
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf(pages=2)).status_code == 201
    if copy:
        assert client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers).status_code == 200
    return envelope_id


def _document(runtime: Runtime, envelope_id: str) -> VaultedDocument:
    with runtime.db.read_session() as session:
        record = session.exec(select(VaultRecord).where(VaultRecord.envelope_id == envelope_id)).one()
        return session.exec(select(VaultedDocument).where(VaultedDocument.record_id == record.id)).one()


def _events(runtime: Runtime, envelope_id: str) -> list[str]:
    with runtime.db.read_session() as session:
        rows = session.exec(select(Event).where(Event.envelope_id == envelope_id).order_by(Event.chain_seq)).all()
    return [e.event_type for e in rows]


@pytest.fixture
def second_runtime(vault_env: dict[str, str], runtime: Runtime) -> Iterator[Callable[..., TestClient[Any]]]:
    """Open another runtime on the same database and store, with other settings, served by its own app."""
    opened: list[tuple[Runtime, TestClient[Any]]] = []

    def make(**overrides: str) -> TestClient[Any]:
        other = open_runtime(Settings.from_env({**vault_env, **overrides}))
        client = TestClient(create_app(other))
        client.__enter__()
        opened.append((other, client))
        return client

    yield make
    for other, client in opened:
        client.__exit__(None, None, None)
        other.close()


def test_an_honest_envelope_passes_every_condition(client: Any, tenant: Any) -> None:
    _, headers = tenant
    result = _check(client, headers, _vaulted(client, headers))
    assert result["verdict"] == "pass" and _status(result) == dict.fromkeys("123456", "pass"), result
    one = result["conditions"][0]["evidence"]["documents"][0]
    assert one["sha256_read"] == one["sha256"] and one["lock_mode"] == "COMPLIANCE"


def test_events_not_yet_checkpointed_are_pending_until_a_checkpoint(client: Any, tenant: Any, runtime: Runtime) -> None:
    _, headers = tenant
    envelope_id = _vaulted(client, headers, copy=False)
    first = _check(client, headers, envelope_id, now=False)
    assert first["verdict"] == "pending" and "no signed checkpoint" in _reasons(first, "6")
    assert _check(client, headers, envelope_id)["verdict"] == "pass"
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers).status_code == 200
    pending = _check(client, headers, envelope_id, now=False)
    assert pending["verdict"] == "pending" and _status(pending)["6"] == "pending"
    assert "(vault.copy_issued) is not yet covered by a signed checkpoint" in _reasons(pending, "6")
    assert _check(client, headers, envelope_id)["verdict"] == "pass"
    assert "compliance.check_failed" not in _events(runtime, envelope_id)


def test_an_empty_conjunction_fails(runtime: Runtime, tenant: Any, client: Any) -> None:
    org_id, headers = tenant
    envelope_id = _vaulted(client, headers, copy=False)
    assert overall([]) == "fail"
    assert AllOf(()).verify(gather(runtime.sources(), policy_of(runtime), org_id, envelope_id)).status == "fail"


def test_1_second_version_put_at_the_authoritative_key(
    client: Any, tenant: Any, runtime: Runtime, s3_admin_client: Any
) -> None:
    _, headers = tenant
    envelope_id = _vaulted(client, headers)
    doc = _document(runtime, envelope_id)
    s3_admin_client.put_object(Bucket=doc.s3_bucket, Key=doc.s3_key, Body=b"%PDF-1.7 replaced")
    result = _check(client, headers, envelope_id)
    assert _status(result)["1"] == "fail" and "other version" in _reasons(result, "1")
    assert result["verdict"] == "fail"
    assert _events(runtime, envelope_id)[-1] == "compliance.check_failed"


def test_1_record_pointing_to_an_unlocked_object_made_by_hand(client: Any, tenant: Any, runtime: Runtime) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    pdf = make_pdf()
    digest = hashlib.sha256(pdf).hexdigest()
    key = authoritative_key(org_id, envelope_id, 0, digest)
    stored = runtime.authoritative.put_plain(key, pdf, "application/pdf")  # no lock
    with runtime.db.session() as session:
        key_row = session.exec(select(ApiKey).where(ApiKey.org_id == org_id)).first()
        assert key_row is not None
        record = VaultRecord(
            id=new_id("ac"),
            envelope_id=envelope_id,
            org_id=org_id,
            source="upload",
            retain_until=utcnow() + timedelta(days=1),
            vaulted_at=utcnow(),
            vaulted_by=key_row.id,
        )
        session.add(record)
        session.flush()
        session.add(
            VaultedDocument(
                id=new_id("doc"),
                record_id=record.id,
                position=0,
                filename="loan.pdf",
                sha256=digest,
                size=len(pdf),
                page_count=1,
                s3_bucket=runtime.authoritative.bucket,
                s3_key=key,
                s3_version_id=stored.version_id,
            )
        )
    result = _check(client, headers, envelope_id)
    reasons = _reasons(result, "1")
    assert _status(result)["1"] == "fail" and "not under a COMPLIANCE lock" in reasons
    assert "differs from the vaulted_in entry" in reasons
    assert _status(result)["2"] == "fail"  # no vault-in in the ledger: no assignee of record


def test_2_assignee_changed_or_removed_outside_the_api(client: Any, tenant: Any, runtime: Runtime) -> None:
    _, headers = tenant
    envelope_id = _vaulted(client, headers)
    for edited in ({"name": "Someone Else"}, None):
        with runtime.db.session() as session:
            envelope = session.get(Envelope, envelope_id)
            assert envelope is not None
            envelope.secured_party = edited
            session.add(envelope)
        result = _check(client, headers, envelope_id)
        assert _status(result)["2"] == "fail" and "differs from the assignee of record" in _reasons(result, "2")
        evidence = result["conditions"][1]["evidence"]
        assert evidence["assignee_of_record"] == {"name": "First Bank", "id": "bank-1"}
        assert evidence["history"][0]["type"] == "vault.vaulted_in"


def test_3_custodian_not_the_one_named_in_settings(client: Any, tenant: Any, second_runtime: Any) -> None:
    _, headers = tenant
    envelope_id = _vaulted(client, headers)
    assert _check(client, headers, envelope_id)["verdict"] == "pass"
    elsewhere = second_runtime(EVAULT_CUSTODIAN_NAME="Other Operator", EVAULT_CUSTODIAN_ID="other.example")
    result = _check(elsewhere, headers, envelope_id)
    assert _status(result)["3"] == "fail" and "(other.example) is not the key" in _reasons(result, "3")
    assert result["conditions"][2]["evidence"]["custodian"] == {"name": "Other Operator", "id": "other.example"}


def test_3_record_kept_outside_the_custodians_bucket(
    client: Any, tenant: Any, second_runtime: Any, vault_env: dict[str, str], s3_admin_client: Any
) -> None:
    _, headers = tenant
    envelope_id = _vaulted(client, headers)
    other_bucket = vault_env["EVAULT_S3_BUCKET"] + "-b"
    ensure_bucket(s3_admin_client, other_bucket, object_lock=True)
    elsewhere = second_runtime(EVAULT_S3_BUCKET=other_bucket)
    result = _check(elsewhere, headers, envelope_id)
    assert _status(result)["3"] == "fail" and "not the custodian's bucket" in _reasons(result, "3")


def test_4_event_by_a_key_that_never_had_the_scope(client: Any, tenant: Any, runtime: Runtime, make_key: Any) -> None:
    org_id, headers = tenant
    envelope_id = _vaulted(client, headers)
    _, auditor = make_key(["compliance:read"], org_id=org_id)
    with runtime.db.session() as session:  # the key row edited by hand: it never held vault:write
        key = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(headers["X-API-Key"]))).one()
        key.scopes = ["envelopes:read", "envelopes:write"]
        session.add(key)
    result = _check(client, {"X-API-Key": auditor}, envelope_id, now=False)  # a read-only key signs nothing
    assert _status(result)["4"] == "fail" and "does not hold vault:write" in _reasons(result, "4")


def test_5_unregistered_object_under_the_copy_prefix(
    client: Any, tenant: Any, runtime: Runtime, s3_admin_client: Any
) -> None:
    org_id, headers = tenant
    envelope_id = _vaulted(client, headers)
    stray = f"copies/{org_id}/{envelope_id}/cp_handmade0000.pdf"
    s3_admin_client.put_object(Bucket=runtime.copies.bucket, Key=stray, Body=make_pdf())
    result = _check(client, headers, envelope_id)
    assert _status(result)["5"] == "fail" and f"unregistered object {stray}" in _reasons(result, "5")


def test_5_registered_copy_replaced_by_an_unmarked_file(
    client: Any, tenant: Any, runtime: Runtime, s3_admin_client: Any
) -> None:
    _, headers = tenant
    envelope_id = _vaulted(client, headers)
    pdf = make_pdf(pages=2)
    (copy_row,) = _copies(runtime, envelope_id)
    s3_admin_client.put_object(Bucket=copy_row["bucket"], Key=copy_row["key"], Body=pdf)
    result = _check(client, headers, envelope_id)
    assert _status(result)["5"] == "fail" and "unregistered object" in _reasons(result, "5")


def _copies(runtime: Runtime, envelope_id: str) -> list[dict[str, str]]:
    with runtime.db.read_session() as session:
        rows = session.exec(select(CopyRecord).where(CopyRecord.envelope_id == envelope_id)).all()
    return [{"bucket": r.s3_bucket, "key": r.s3_key, "id": r.id} for r in rows]


def test_6_an_edited_event_row(client: Any, tenant: Any, runtime: Runtime) -> None:
    _, headers = tenant
    envelope_id = _vaulted(client, headers)
    assert _check(client, headers, envelope_id)["verdict"] == "pass"
    with runtime.db.session() as session:
        disarm_triggers(session, "event")
        row = session.exec(
            select(Event).where(Event.envelope_id == envelope_id, Event.event_type == "vault.vaulted_in")
        ).one()
        row.entry = row.entry.replace(b"First Bank", b"Forged Bank")
        session.add(row)
    result = _check(client, headers, envelope_id, now=False)
    reasons = _reasons(result, "6")
    assert _status(result)["6"] == "fail" and "no longer matches its entry" in reasons
    assert "not the entry the signed checkpoint includes" in reasons


def test_6_a_deleted_chain_entry(client: Any, tenant: Any, runtime: Runtime) -> None:
    _, headers = tenant
    envelope_id = _vaulted(client, headers)
    assert _check(client, headers, envelope_id)["verdict"] == "pass"
    with runtime.db.session() as session:
        disarm_triggers(session, "event")
        last = session.exec(
            select(Event).where(Event.envelope_id == envelope_id).order_by(Event.chain_seq.desc())  # type: ignore[union-attr]
        ).first()
        assert last is not None and last.event_type == "vault.copy_issued"
        session.delete(last)
    result = _check(client, headers, envelope_id, now=False)
    assert _status(result)["6"] == "fail" and "events were removed or added" in _reasons(result, "6")
    assert _status(result)["5"] == "fail"  # the copy's registration no longer has its ledger event
