"""Unique is what the bucket holds: condition 1 and the verifier count every object, not only the recorded ones
(issue 20: condition 1 said "unique" beside a second locked PDF planted under the envelope's prefix, and the
verifier never looked outside ``<prefix>/<org>/``)."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from compliance.verifier import verify_vault
from storage.ids import utcnow
from storage.keys import authoritative_key
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from vault.runtime import Runtime


def _plant(s3_admin_client: Any, bucket: str, key: str, body: bytes, locked: bool = True) -> str:
    extra: dict[str, Any] = {}
    if locked:
        extra = {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": utcnow() + timedelta(days=1)}
    put = s3_admin_client.put_object(Bucket=bucket, Key=key, Body=body, **extra)
    version: str = put["VersionId"]
    return version


def _condition_1(client: Any, headers: dict[str, str], envelope_id: str) -> dict[str, Any]:
    answer = client.get(f"{API}/envelopes/{envelope_id}/compliance?checkpoint=now", headers=headers)
    assert answer.status_code == 200, answer.text
    condition: dict[str, Any] = next(c for c in answer.json()["conditions"] if c["condition"] == "1")
    return condition


def test_1_a_second_locked_pdf_under_the_envelope_prefix_is_not_unique(
    client: Any, runtime: Runtime, tenant: Any, s3_admin_client: Any
) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    assert _condition_1(client, headers, envelope_id)["status"] == "pass"

    second = make_pdf(text="a second original")
    planted = {
        authoritative_key(org_id, envelope_id, 1, hashlib.sha256(second).hexdigest()): second,
        f"authoritative/{org_id}/{envelope_id}/copy-of-record.pdf": second,
    }
    versions = {key: _plant(s3_admin_client, runtime.authoritative.bucket, key, body) for key, body in planted.items()}

    condition = _condition_1(client, headers, envelope_id)
    assert condition["status"] == "fail"
    for key, version in versions.items():
        assert any(key in reason and "not unique" in reason for reason in condition["reasons"]), condition
        assert {"key": key, "version_id": version, "delete_marker": False} in condition["evidence"]["unrecorded"]


def test_the_verifier_reports_objects_outside_every_known_place(
    client: Any, runtime: Runtime, tenant: Any, s3_admin_client: Any
) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers).status_code == 200
    assert verify_vault(runtime.sources())["clean"]

    pdf = make_pdf(text="planted")
    auth, copies = runtime.authoritative.bucket, runtime.copies.bucket
    planted = [
        (auth, "elsewhere/loan.pdf"),
        (auth, "top-level.pdf"),
        (auth, f"authoritative/org_nosuchorganisation1/env_nosuchenvelope1/000-{'0' * 64}.pdf"),
        (auth, f"amendments/org_nosuchorganisation1/env_nosuchenvelope1/amd_nosuchamendment1/000-{'0' * 64}.pdf"),
        (auth, f"log/{org_id}/notes.txt"),
        (auth, f"log/{org_id}/checkpoint/00000000000000000003.planted"),
        (copies, "stray/copy.pdf"),
        (copies, "copies/org_nosuchorganisation1/env_nosuchenvelope1/cpy_nosuchcopy0001.pdf"),
    ]
    for bucket, key in planted:
        _plant(s3_admin_client, bucket, key, pdf, locked=bucket == auth)

    findings = verify_vault(runtime.sources())["findings"]
    assert sorted((f["details"]["bucket"], f["details"]["key"]) for f in findings) == sorted(planted)
    assert {f["code"] for f in findings} == {"Object.Unknown"}
