"""``evault verify`` on a clean vault and on faults planted with the storage administrator's credentials."""

from __future__ import annotations

from typing import Any

from compliance.verifier import verify_vault
from tests.helpers import create_envelope, upload
from tests.pdf_factory import make_pdf
from vault.runtime import Runtime


def test_clean_vault_verifies_and_a_planted_version_is_named(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    report = verify_vault(runtime.sources())
    assert report["clean"] and report["documents"] == 1, report
    key = runtime.s3_client.list_object_versions(Bucket=runtime.authoritative.bucket)["Versions"][0]["Key"]
    runtime.s3_client.put_object(Bucket=runtime.authoritative.bucket, Key=key, Body=b"%PDF-planted")
    report = verify_vault(runtime.sources())
    assert not report["clean"]
    # The planted version sits beside the recorded one, and no record names it.
    found = {f["code"]: f["details"] for f in report["findings"]}
    assert set(found) == {"Object.ExtraVersion", "Object.Unrecorded"}, report
    assert found["Object.ExtraVersion"]["envelope_id"] == found["Object.Unrecorded"]["envelope_id"] == envelope_id
