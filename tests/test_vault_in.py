"""Vault-in through the HTTP API against real SeaweedFS and the configured database."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlmodel import select

from storage.ids import as_utc
from storage.models import Event, VaultRecord
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_encrypted_pdf, make_pdf, make_signed_pdf, truncate
from vault.runtime import Runtime


def _state(runtime: Runtime, org_id: str, envelope_id: str) -> tuple[int, int, list[str]]:
    """(events, vault records, object keys) visible for this envelope: what 'nothing written' checks."""
    with runtime.db.session() as session:
        events = len(session.exec(select(Event).where(Event.org_id == org_id)).all())
        records = len(session.exec(select(VaultRecord).where(VaultRecord.envelope_id == envelope_id)).all())
    listed = runtime.s3_client.list_object_versions(Bucket=runtime.authoritative.bucket)
    keys = [v["Key"] for v in listed.get("Versions", [])]
    return events, records, keys


def test_vault_in_stores_exact_bytes_under_compliance_lock(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    pdf = make_pdf(pages=3)
    response = upload(client, headers, envelope_id, pdf)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["vault"]["state"] == "vaulted" and body["replayed"] is False
    assert body["vault"]["authoritative_copy_id"].startswith("ac_")
    (doc,) = body["vault"]["documents"]
    assert doc["sha256"] == hashlib.sha256(pdf).hexdigest() and doc["size"] == len(pdf) and doc["pages"] == 3

    with runtime.db.session() as session:
        record = session.exec(select(VaultRecord).where(VaultRecord.envelope_id == envelope_id)).one()
    key = runtime.s3_client.list_object_versions(Bucket=runtime.authoritative.bucket)["Versions"][0]["Key"]
    head = runtime.s3_client.head_object(
        Bucket=runtime.authoritative.bucket, Key=key, VersionId=doc["version_id"], ChecksumMode="ENABLED"
    )
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert abs((head["ObjectLockRetainUntilDate"] - as_utc(record.retain_until)).total_seconds()) < 1
    stored = runtime.s3_client.get_object(Bucket=runtime.authoritative.bucket, Key=key, VersionId=doc["version_id"])
    assert stored["Body"].read() == pdf


def test_authoritative_object_cannot_be_deleted_or_overwritten(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    pdf = make_pdf()
    doc = upload(client, headers, envelope_id, pdf).json()["vault"]["documents"][0]
    bucket = runtime.authoritative.bucket
    key = runtime.s3_client.list_object_versions(Bucket=bucket)["Versions"][0]["Key"]
    with pytest.raises(ClientError) as denied:
        runtime.s3_client.delete_object(Bucket=bucket, Key=key, VersionId=doc["version_id"])
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as exists:
        runtime.s3_client.put_object(Bucket=bucket, Key=key, Body=b"%PDF-forged", IfNoneMatch="*")
    assert exists.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    # A plain overwrite only adds a version; the authoritative version, addressed by id, is untouched.
    runtime.s3_client.put_object(Bucket=bucket, Key=key, Body=b"%PDF-forged")
    kept = runtime.s3_client.get_object(Bucket=bucket, Key=key, VersionId=doc["version_id"])["Body"].read()
    assert kept == pdf


def test_multipart_vault_in_with_several_documents_and_metadata(client: Any, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers, secured_party=None)
    first, second = make_pdf(pages=1, text="Note"), make_pdf(pages=2, text="Security agreement")
    response = client.post(
        f"{API}/envelopes/{envelope_id}/vault-in-upload",
        headers=headers,
        files=[
            ("document", ("note.pdf", first, "application/pdf")),
            ("document", ("security.pdf", second, "application/pdf")),
        ],
        data={"metadata": '{"secured_party": {"name": "Second Bank"}}', "sha256_1": hashlib.sha256(second).hexdigest()},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert [d["filename"] for d in body["vault"]["documents"]] == ["note.pdf", "security.pdf"]
    assert body["secured_party"] == {"name": "Second Bank"}


def test_second_vault_in_is_a_replay_or_a_conflict(client: Any, runtime: Runtime, tenant: Any) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    pdf = make_pdf()
    assert upload(client, headers, envelope_id, pdf).status_code == 201
    before = _state(runtime, org_id, envelope_id)
    replay = upload(client, headers, envelope_id, pdf)
    assert replay.status_code == 200 and replay.json()["replayed"] is True
    other = upload(client, headers, envelope_id, make_pdf(text="Different"))
    assert other.status_code == 409 and other.json()["code"] == "Vault.AlreadyVaulted"
    assert _state(runtime, org_id, envelope_id)[:2] == before[:2]


BAD_INPUTS = {
    "empty": (b"", "Document.Empty", 400),
    "not-pdf": (b"GIF89a not a pdf at all", "Document.NotPdf", 400),
    "encrypted": (make_encrypted_pdf(), "Document.Encrypted", 400),
    "truncated": (truncate(make_signed_pdf()), "Document.Malformed", 400),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_pdf_is_refused_and_nothing_is_written(client: Any, runtime: Runtime, tenant: Any, case: str) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    data, code, status = BAD_INPUTS[case]
    before = _state(runtime, org_id, envelope_id)
    response = upload(client, headers, envelope_id, data)
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert response.json()["request_id"] == response.headers["x-request-id"]
    assert _state(runtime, org_id, envelope_id) == before


def test_wrong_hash_and_oversize_body_are_refused(client: Any, runtime: Runtime, tenant: Any) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    before = _state(runtime, org_id, envelope_id)
    wrong = upload(client, headers, envelope_id, make_pdf(), sha256="0" * 64)
    assert (wrong.status_code, wrong.json()["code"]) == (400, "Document.HashMismatch")
    big = upload(client, headers, envelope_id, make_pdf(size_bytes=3 * 1024 * 1024))
    assert (big.status_code, big.json()["code"]) == (413, "Request.TooLarge")
    assert _state(runtime, org_id, envelope_id) == before


def test_signed_flow_needs_a_signed_pdf_and_an_esign_envelope(client: Any, tenant: Any) -> None:
    _, headers = tenant
    esign = create_envelope(client, headers, kind="esign")
    unsigned = upload(client, headers, esign, make_pdf(), flow="signed")
    assert (unsigned.status_code, unsigned.json()["code"]) == (400, "Document.NotSigned")
    assert upload(client, headers, esign, make_signed_pdf(), flow="signed").status_code == 201
    paper = create_envelope(client, headers)
    wrong_flow = upload(client, headers, paper, make_signed_pdf(), flow="signed")
    assert (wrong_flow.status_code, wrong_flow.json()["code"]) == (409, "Vault.WrongFlow")


def test_storage_failure_leaves_no_record(client: Any, runtime: Runtime, tenant: Any) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    before = _state(runtime, org_id, envelope_id)
    runtime.authoritative.bucket = "no-such-bucket-here"
    response = upload(client, headers, envelope_id, make_pdf())
    runtime.authoritative.bucket = runtime.settings.s3.authoritative_bucket
    assert (response.status_code, response.json()["code"]) == (503, "Storage.Unavailable")
    assert _state(runtime, org_id, envelope_id) == before
    assert client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()["vault"]["state"] == "not_vaulted"


def test_database_failure_after_store_is_completed_by_the_retry(
    client: Any, runtime: Runtime, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    pdf = make_pdf()
    import vault.vault_in as vault_in_module

    real_record = vault_in_module.record_claim

    def failing_record(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("database went away")

    monkeypatch.setattr(vault_in_module, "record_claim", failing_record)
    failed = upload(client, headers, envelope_id, pdf)
    assert failed.status_code == 500 and failed.json()["code"] == "Server.InternalError"
    assert client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()["vault"]["state"] == "not_vaulted"
    monkeypatch.setattr(vault_in_module, "record_claim", real_record)
    retried = upload(client, headers, envelope_id, pdf)
    assert retried.status_code == 201
    doc = retried.json()["vault"]["documents"][0]
    versions = runtime.s3_client.list_object_versions(Bucket=runtime.authoritative.bucket)["Versions"]
    assert [v["VersionId"] for v in versions] == [doc["version_id"]]
