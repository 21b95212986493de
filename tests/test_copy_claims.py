"""No unregistered copy after a crash: the claim before the put, the reconciler after, and the verifier between.

A copy's object is put before its register row commits. A process killed between the two leaves an object the
register does not name; its claim names it, so the verifier takes it for a copy on its way within the grace
period, and the reconciler deletes the object and the claim after it. A request that registers after the
reconciler took its claim fails with 503 and leaves nothing behind. On SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import select

from compliance.verifier import verify_vault
from storage.ids import utcnow
from storage.models import CopyClaim, CopyRecord
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from vault import retrieval
from vault.reconcile import reconcile_copy_claims
from vault.runtime import Runtime
from vault.tenancy import authenticate

NOW = timedelta(0)
HOUR = timedelta(hours=1)


def _codes(report: dict[str, Any]) -> list[str]:
    return [f["code"] for f in report["findings"]]


def _copy_objects(runtime: Runtime, org_id: str) -> list[tuple[str, str]]:
    return list(runtime.copies.list_all_versions(f"copies/{org_id}/"))


def _rows(runtime: Runtime, model: Any) -> list[Any]:
    with runtime.db.read_session() as session:
        return list(session.exec(select(model)))


def _condition_5(client: Any, headers: dict[str, str], envelope_id: str) -> dict[str, Any]:
    result = client.get(f"{API}/envelopes/{envelope_id}/compliance", headers=headers).json()
    found: dict[str, Any] = next(c for c in result["conditions"] if c["condition"] == "5")
    return found


def _vaulted(client: Any, headers: dict[str, str]) -> str:
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    return envelope_id


def _actor(runtime: Runtime, headers: dict[str, str]) -> Any:
    with runtime.db.read_session() as session:
        return authenticate(session, headers["X-API-Key"]).actor()


def test_an_issued_copy_leaves_no_claim(client: Any, runtime: Runtime, tenant: Any) -> None:
    org_id, headers = tenant
    envelope_id = _vaulted(client, headers)
    response = client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers)
    assert response.status_code == 200, response.text
    assert _rows(runtime, CopyClaim) == [] and len(_rows(runtime, CopyRecord)) == 1
    assert len(_copy_objects(runtime, org_id)) == 1


def test_a_copy_whose_process_died_before_its_register_is_in_flight_then_removed(
    client: Any, runtime: Runtime, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org_id, headers = tenant
    envelope_id = _vaulted(client, headers)

    def killed(*_: Any, **__: Any) -> None:  # no clean-up runs: the process is gone after the put
        raise SystemExit("process died between the copy's put and its register")

    monkeypatch.setattr(retrieval, "register_copy", killed)
    with pytest.raises(SystemExit):
        retrieval.issue_copies(runtime.custody(), _actor(runtime, headers), envelope_id)
    monkeypatch.undo()
    ((key, version),) = _copy_objects(runtime, org_id)
    (claim,) = _rows(runtime, CopyClaim)
    assert claim.s3_key == key and claim.org_id == org_id and _rows(runtime, CopyRecord) == []
    # The live check names it as in flight, not as an unregistered copy.
    five = _condition_5(client, headers, envelope_id)
    assert five["status"] == "pass", five
    assert five["evidence"]["in_flight"] == [[key, version]] and five["evidence"]["unregistered"] == []
    # Within the grace period the object is a copy on its way; past it, and with the claim gone, it is reported.
    assert _codes(verify_vault(runtime.sources(), HOUR)) == []
    assert _codes(verify_vault(runtime.sources(), NOW)) == ["Copy.Unregistered"]
    # The live check agrees once the claim is past the grace period, with no reconciler run in between.
    grace = timedelta(seconds=runtime.settings.vault.claim_grace_seconds)
    with runtime.db.session() as session:
        session.execute(update(CopyClaim).values(claimed_at=utcnow() - grace - timedelta(seconds=5)))
    five = _condition_5(client, headers, envelope_id)
    assert five["status"] == "fail" and five["evidence"]["in_flight"] == [], five
    assert five["evidence"]["unregistered"] == [[key, version]]
    assert "past the grace period" in " ".join(five["reasons"]), five
    assert reconcile_copy_claims(runtime.custody(), HOUR) == []  # young: left alone
    assert reconcile_copy_claims(runtime.custody(), NOW) == [claim.copy_id]
    assert _copy_objects(runtime, org_id) == [] and _rows(runtime, CopyClaim) == []
    assert _codes(verify_vault(runtime.sources(), NOW)) == []
    # The next copy is issued as usual.
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers).status_code == 200
    assert _codes(verify_vault(runtime.sources(), NOW)) == []


def test_an_unregistered_object_without_a_claim_is_reported_at_once(client: Any, runtime: Runtime, tenant: Any) -> None:
    org_id, headers = tenant
    envelope_id = _vaulted(client, headers)
    runtime.copies.put_plain(f"copies/{org_id}/{envelope_id}/cp_planted.pdf", b"%PDF-1.7 planted", "application/pdf")
    assert _codes(verify_vault(runtime.sources(), HOUR)) == ["Copy.Unregistered"]
    five = _condition_5(client, headers, envelope_id)
    assert five["status"] == "fail" and five["evidence"]["in_flight"] == [], five
    assert reconcile_copy_claims(runtime.custody(), NOW) == []  # nothing claimed it: the reconciler never deletes it
    assert len(_copy_objects(runtime, org_id)) == 1


def test_a_register_after_the_reconciler_took_the_claim_is_503_and_leaves_nothing(
    client: Any, runtime: Runtime, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org_id, headers = tenant
    envelope_id = _vaulted(client, headers)
    custody = runtime.custody()
    put = custody.copies.put_plain

    def slow_put(*args: Any, **kwargs: Any) -> Any:  # the grace passes while the object is being stored
        stored = put(*args, **kwargs)
        with runtime.db.session() as session:
            session.execute(update(CopyClaim).values(claimed_at=utcnow() - HOUR))
        assert len(reconcile_copy_claims(custody, NOW)) == 1
        return stored

    monkeypatch.setattr(custody.copies, "put_plain", slow_put)
    with pytest.raises(retrieval.Unavailable) as refused:
        retrieval.issue_copies(custody, _actor(runtime, headers), envelope_id)
    assert refused.value.code == "Storage.Unavailable"
    assert _copy_objects(runtime, org_id) == [] and _rows(runtime, CopyClaim) == []
    assert _rows(runtime, CopyRecord) == []
    assert _codes(verify_vault(runtime.sources(), NOW)) == []
