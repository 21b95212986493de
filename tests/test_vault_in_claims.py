"""No locked object without a record: the claim before the put, the reconciler after a crash, and the verifier.

A vault-in that dies between its S3 put and its record leaves a claim; the reconciler completes it from the
plan. One that never stored its objects is released. Any object under the authoritative prefix that no record
names is reported as ``Object.Unrecorded``. Bad request content is refused before anything is written.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from compliance.verifier import verify_vault
from storage.errors import StorageUnavailable
from storage.ids import utcnow
from storage.models import Event, VaultClaim, VaultedDocument
from storage.object_store import ObjectStore
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from vault import vault_in as vault_in_module
from vault.reconcile import reconcile_claims
from vault.runtime import Runtime
from vault.tenancy import authenticate
from vault.vault_in import Upload

NOW = timedelta(0)


def _codes(report: dict[str, Any]) -> list[str]:
    return [f["code"] for f in report["findings"]]


def _objects(runtime: Runtime, org_id: str, envelope_id: str) -> list[str]:
    prefix = f"authoritative/{org_id}/{envelope_id}/"
    listed = runtime.s3_client.list_object_versions(Bucket=runtime.authoritative.bucket, Prefix=prefix)
    return [v["Key"] for v in listed.get("Versions", [])]


def _expire_leases(runtime: Runtime) -> None:
    with runtime.db.session() as session:
        session.execute(update(VaultClaim).values(lease_until=utcnow() - timedelta(seconds=1)))


def _claims(runtime: Runtime) -> list[VaultClaim]:
    with runtime.db.read_session() as session:
        return list(session.exec(select(VaultClaim)))


def test_crash_after_put_is_completed_by_the_reconciler(
    client: Any, runtime: Runtime, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    pdf = make_pdf()

    def crash(*_: Any, **__: Any) -> None:
        raise SystemExit("process died between the put and the record")

    monkeypatch.setattr(vault_in_module, "record_claim", crash)
    with runtime.db.read_session() as session:
        actor = authenticate(session, headers["X-API-Key"]).actor()
    with pytest.raises(SystemExit):
        vault_in_module.vault_in(runtime.custody(), actor, envelope_id, [Upload("loan.pdf", pdf)], source="upload")
    monkeypatch.undo()
    assert upload(client, headers, envelope_id, pdf).json()["code"] == "Vault.InProgress"  # the dead one's lease
    _expire_leases(runtime)  # time passes: the dead request's lease runs out
    assert len(_objects(runtime, org_id, envelope_id)) == 1 and len(_claims(runtime)) == 1
    assert "Vault.ClaimUnfinished" in _codes(verify_vault(runtime.sources(), NOW))
    # A young claim is in flight: its object is not reported as unrecorded.
    assert _codes(verify_vault(runtime.sources(), timedelta(hours=1))) == []

    (outcome,) = reconcile_claims(runtime.custody(), NOW)
    assert outcome.outcome == "completed"
    body = client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()
    assert body["vault"]["state"] == "vaulted"
    assert body["vault"]["documents"][0]["sha256"] == hashlib.sha256(pdf).hexdigest()
    with runtime.db.read_session() as session:
        event = session.exec(
            select(Event).where(Event.envelope_id == envelope_id).order_by(col(Event.chain_seq).desc())
        ).first()
    assert event is not None and event.event_type == "vault.vaulted_in"
    assert json.loads(event.entry)["data"]["reconciled"] is True
    assert _claims(runtime) == [] and verify_vault(runtime.sources(), NOW)["clean"]
    # The client's retry now finds the finished vault-in and replays it.
    assert upload(client, headers, envelope_id, pdf).status_code == 200


def test_failed_put_keeps_the_claim_for_a_same_bytes_retry_and_blocks_other_bytes(
    client: Any, runtime: Runtime, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    pdf = make_pdf()

    def unavailable(*_: Any, **__: Any) -> None:
        raise StorageUnavailable("store down")

    monkeypatch.setattr(ObjectStore, "put_write_once_file", unavailable)
    failed = upload(client, headers, envelope_id, pdf)
    assert (failed.status_code, failed.json()["code"]) == (503, "Storage.Unavailable")
    monkeypatch.undo()
    other = upload(client, headers, envelope_id, make_pdf(text="other"))
    assert (other.status_code, other.json()["code"]) == (409, "Vault.InProgress")
    assert _objects(runtime, org_id, envelope_id) == []
    assert upload(client, headers, envelope_id, pdf).status_code == 201
    assert _claims(runtime) == []


def test_claim_whose_objects_never_arrived_is_released(
    client: Any, runtime: Runtime, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)

    def unavailable(*_: Any, **__: Any) -> None:
        raise StorageUnavailable("store down")

    monkeypatch.setattr(ObjectStore, "put_write_once_file", unavailable)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 503
    monkeypatch.undo()
    assert reconcile_claims(runtime.custody(), timedelta(hours=1)) == []  # young claims are left alone
    (outcome,) = reconcile_claims(runtime.custody(), NOW)
    assert outcome.outcome == "released" and _claims(runtime) == []
    assert upload(client, headers, envelope_id, make_pdf(text="other")).status_code == 201


def test_an_object_no_record_names_is_reported(client: Any, runtime: Runtime, tenant: Any) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    assert verify_vault(runtime.sources(), NOW)["clean"]
    planted = f"authoritative/{org_id}/{envelope_id}/001-{'ab' * 32}.pdf"
    runtime.s3_client.put_object(Bucket=runtime.authoritative.bucket, Key=planted, Body=b"%PDF-planted")
    (finding,) = verify_vault(runtime.sources(), NOW)["findings"]
    assert finding["code"] == "Object.Unrecorded"
    assert finding["details"]["key"] == planted and finding["details"]["envelope_id"] == envelope_id


def _multipart(client: Any, headers: dict[str, str], envelope_id: str, metadata: str, filename: str) -> Any:
    pdf = make_pdf()
    return client.post(
        f"{API}/envelopes/{envelope_id}/vault-in-upload",
        files=[("document", (filename, pdf, "application/pdf"))],
        data={"metadata": metadata},
        headers=headers,
    )


@pytest.mark.parametrize(
    "metadata",
    [
        '{"loan": 9007199254740993}',
        '{"rate": 1e400}',
        "{" + '"a": {' * 40 + "}" * 40 + "}",
        json.dumps({"blob": "x" * 20000}),
        '{"secured_party": {"name": ""}}',
        json.dumps({"secured_party": {"name": "B" * 500}}),
    ],
    ids=["beyond-2**53", "infinite", "too-deep", "too-large", "unnamed-party", "party-name-too-long"],
)
def test_content_the_record_could_not_hold_is_refused_before_any_write(
    client: Any, runtime: Runtime, tenant: Any, metadata: str
) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    response = _multipart(client, headers, envelope_id, metadata, "loan.pdf")
    assert response.status_code == 400, response.text
    assert response.json()["code"] in {
        "Request.InvalidMetadata",
        "Envelope.SecuredPartyRequired",
        "Envelope.InvalidParty",
    }
    assert _objects(runtime, org_id, envelope_id) == [] and _claims(runtime) == []


def test_hostile_filenames_are_made_safe_on_both_databases(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    response = _multipart(client, headers, envelope_id, "{}", "../../etc/" + "n" * 300 + "\x01.pdf")
    assert response.status_code == 201, response.text
    with runtime.db.read_session() as session:
        (doc,) = session.exec(select(VaultedDocument)).all()
    assert "/" not in doc.filename and "\x01" not in doc.filename and len(doc.filename) <= 200
