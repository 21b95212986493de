"""Retention and legal hold: the objects' S3 Object Lock state changes with the record and its events.

Everything is checked on the real store: a held version refuses deletion by the admin identity even after its
retention ran out, a lengthened retention is what the store reports, a shortening is refused with nothing
changed, disposal deletes what is due and keeps the hashes in the log, and the verifier and the certificate
follow the log (a hold cleared behind the log's back is a finding).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlmodel import select

from compliance.certificates.issuance import sign_certificate
from compliance.certificates.offline_check import CertificateInvalid, verify_certificate
from compliance.ledger.events import log_size
from compliance.verifier import Options, verify
from storage.ids import iso
from storage.models import Event, VaultedDocument, VaultRecord
from tests import outside_verifier
from tests.helpers import API, create_envelope, sleep_past, together, upload
from tests.pdf_factory import make_pdf
from vault.runtime import Runtime


def _vaulted(client: Any, headers: dict[str, str]) -> str:
    envelope_id = create_envelope(client, headers)
    pdf = make_pdf(text=f"Loan {envelope_id}")
    assert upload(client, headers, envelope_id, pdf).status_code == 201
    return envelope_id


def _short_retention(runtime: Runtime, seconds: int) -> None:
    """What EVAULT_RETENTION_DAYS cannot say (its minimum is a day): retention of a few seconds, for the test."""
    object.__setattr__(runtime.settings.vault, "retention_days", seconds / 86400)


def _docs(runtime: Runtime, envelope_id: str) -> list[VaultedDocument]:
    with runtime.db.read_session() as session:
        record = session.exec(select(VaultRecord).where(VaultRecord.envelope_id == envelope_id)).one()
        return list(session.exec(select(VaultedDocument).where(VaultedDocument.record_id == record.id)))


def _events(runtime: Runtime, envelope_id: str, event_type: str) -> list[dict[str, Any]]:
    with runtime.db.read_session() as session:
        rows = session.exec(select(Event).where(Event.envelope_id == envelope_id, Event.event_type == event_type)).all()
        return [json.loads(e.entry)["data"] for e in rows]


def _log_size(runtime: Runtime, org_id: str) -> int:
    with runtime.db.read_session() as session:
        return log_size(session, org_id)


def _hold_status(s3: Any, bucket: str, doc: VaultedDocument) -> str:
    r = s3.get_object_legal_hold(Bucket=bucket, Key=doc.s3_key, VersionId=doc.s3_version_id)
    return str(r["LegalHold"]["Status"])


def test_hold_set_and_cleared_and_a_held_version_refuses_deletion(
    client: Any, runtime: Runtime, tenant: Any, s3_admin_client: Any
) -> None:
    org_id, headers = tenant
    _short_retention(runtime, 2)
    envelope_id = _vaulted(client, headers)
    (doc,) = _docs(runtime, envelope_id)
    bucket = runtime.authoritative.bucket
    url = f"{API}/envelopes/{envelope_id}/legal-hold"

    blank = client.post(url, json={"reason": "  "}, headers=headers)
    assert blank.status_code == 400 and blank.json()["code"] == "LegalHold.ReasonRequired"
    not_held = client.request("DELETE", url, json={"reason": "nothing to clear"}, headers=headers)
    assert not_held.status_code == 409 and not_held.json()["code"] == "LegalHold.NotSet"

    held = client.post(url, json={"reason": "litigation 2026-17"}, headers=headers)
    assert held.status_code == 200, held.text
    assert held.json()["vault"]["legal_hold"]["reason"] == "litigation 2026-17"
    assert _hold_status(s3_admin_client, bucket, doc) == "ON"
    again = client.post(url, json={"reason": "twice"}, headers=headers)
    assert again.status_code == 409 and again.json()["code"] == "LegalHold.AlreadySet"

    time.sleep(3)  # the retention has run out: only the hold keeps the version now
    with pytest.raises(ClientError) as refused:
        s3_admin_client.delete_object(Bucket=bucket, Key=doc.s3_key, VersionId=doc.s3_version_id)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"

    size = _log_size(runtime, org_id)
    cleared = client.request("DELETE", url, json={"reason": "case settled"}, headers=headers)
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["vault"]["legal_hold"] is None
    assert _hold_status(s3_admin_client, bucket, doc) == "OFF"
    assert _log_size(runtime, org_id) == size + 1
    assert [e["reason"] for e in _events(runtime, envelope_id, "vault.legal_hold_set")] == ["litigation 2026-17"]
    assert [e["reason"] for e in _events(runtime, envelope_id, "vault.legal_hold_cleared")] == ["case settled"]


def test_retention_lengthens_on_the_objects_and_never_shortens(
    client: Any, runtime: Runtime, tenant: Any, s3_admin_client: Any
) -> None:
    org_id, headers = tenant
    envelope_id = _vaulted(client, headers)
    (doc,) = _docs(runtime, envelope_id)
    url = f"{API}/envelopes/{envelope_id}/retention"
    current = client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()["vault"]["retain_until"]
    size = _log_size(runtime, org_id)

    shorter = iso(dt.datetime.fromisoformat(current) - dt.timedelta(hours=1))
    for wanted, status, code in (
        (shorter, 409, "Retention.CannotShorten"),
        (current, 409, "Retention.CannotShorten"),
        ("2030-01-01T00:00:00", 400, "Retention.InvalidDate"),  # no offset
        ("not a date", 400, "Retention.InvalidDate"),
        ("9999-12-31T23:59:59.5+00:00", 400, "Retention.InvalidDate"),  # beyond 100 years
    ):
        refused = client.post(url, json={"retain_until": wanted}, headers=headers)
        assert (refused.status_code, refused.json()["code"]) == (status, code), refused.text
    assert _log_size(runtime, org_id) == size

    later = dt.datetime.fromisoformat(current) + dt.timedelta(days=400)
    done = client.post(url, json={"retain_until": iso(later)}, headers=headers)
    assert done.status_code == 200, done.text
    assert done.json()["vault"]["retain_until"] == iso(later)
    lock = s3_admin_client.get_object_retention(
        Bucket=runtime.authoritative.bucket, Key=doc.s3_key, VersionId=doc.s3_version_id
    )["Retention"]
    assert lock["Mode"] == "COMPLIANCE" and lock["RetainUntilDate"] == later
    (event,) = _events(runtime, envelope_id, "vault.retention_extended")
    assert event["retain_until"] == iso(later) and event["previous_retain_until"] == current


def test_disposal_deletes_what_is_due_and_keeps_the_hashes(
    client: Any, runtime: Runtime, tenant: Any, evault: Any, s3_admin_client: Any
) -> None:
    _, headers = tenant
    # Long enough that the first listing comes before either is due: with 2 s (cut to the whole second, as S3
    # keeps it), a CLI that took ~1.3 s to start on a loaded machine found one due already (CI, 2026-12-07).
    _short_retention(runtime, 6)
    due_id, held_id = _vaulted(client, headers), _vaulted(client, headers)
    assert client.post(f"{API}/envelopes/{held_id}/legal-hold", json={"reason": "audit"}, headers=headers).is_success
    code, out, _ = evault("dispose", "--due", "--json")
    assert code == 0 and json.loads(out) == []  # not yet due
    due = dt.datetime.fromisoformat(
        client.get(f"{API}/envelopes/{due_id}", headers=headers).json()["vault"]["retain_until"]
    )
    sleep_past(due, 1)

    code, out, err = evault("dispose", "--due", "--json")
    assert code == 0, err
    assert [row["envelope_id"] for row in json.loads(out)] == [due_id]  # the held one is not listed
    (doc,) = _docs(runtime, due_id)
    assert s3_admin_client.list_object_versions(Bucket=runtime.authoritative.bucket, Prefix=doc.s3_key)["Versions"]

    code, out, err = evault("dispose", "--due", "--confirm", "--json")
    assert code == 0, err
    assert [(row["envelope_id"], row["disposed"]) for row in json.loads(out)] == [(due_id, True)]
    listing = s3_admin_client.list_object_versions(Bucket=runtime.authoritative.bucket, Prefix=doc.s3_key)
    assert not listing.get("Versions") and not listing.get("DeleteMarkers")
    (event,) = _events(runtime, due_id, "vault.disposed")
    assert [(d["id"], d["sha256"], d["version_id"]) for d in event["documents"]] == [
        (doc.id, doc.sha256, doc.s3_version_id)
    ]
    view = client.get(f"{API}/envelopes/{due_id}", headers=headers).json()["vault"]
    assert view["disposed_at"] is not None
    (held_doc,) = _docs(runtime, held_id)
    assert _hold_status(s3_admin_client, runtime.authoritative.bucket, held_doc) == "ON"
    code, out, _ = evault("dispose", "--due", "--json")
    assert json.loads(out) == []  # nothing left: disposed once
    refused = client.post(f"{API}/envelopes/{due_id}/legal-hold", json={"reason": "late"}, headers=headers)
    assert refused.status_code == 409 and refused.json()["code"] == "Retention.Disposed"

    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200
    outcome = verify(runtime.sources(), options=Options(concurrency=2))
    assert outcome.clean, outcome.findings  # the disposed object is gone as the log says; the held one is held


def test_verifier_and_certificate_follow_the_log(
    client: Any, runtime: Runtime, tenant: Any, s3_admin_client: Any
) -> None:
    _, headers = tenant
    envelope_id = _vaulted(client, headers)
    (doc,) = _docs(runtime, envelope_id)
    current = client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()["vault"]["retain_until"]
    later = iso(dt.datetime.fromisoformat(current) + dt.timedelta(days=30))
    assert client.post(
        f"{API}/envelopes/{envelope_id}/retention", json={"retain_until": later}, headers=headers
    ).is_success
    held = client.post(f"{API}/envelopes/{envelope_id}/legal-hold", json={"reason": "subpoena"}, headers=headers)
    assert held.is_success
    since = held.json()["vault"]["legal_hold"]["since"]
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200
    clean = verify(runtime.sources(), options=Options(concurrency=2))
    assert clean.clean, clean.findings

    response = client.get(f"{API}/envelopes/{envelope_id}/vault/certificate", headers=headers)
    assert response.status_code == 200, response.text
    document = response.json()
    claimed = document["certificate"]["authoritative_copy"]
    assert claimed["retain_until"] == later and claimed["legal_hold"] == {"reason": "subpoena", "since": since}
    assert document["certificate"]["conditions"]["verdict"] == "pass"
    pem = next(k["pem"] for k in client.get("/.well-known/evault/keys").json()["keys"] if k["use"] == "checkpoint")
    verify_certificate(json.dumps(document), pem.encode())
    outside_verifier.verify_certificate(document, pem.encode())
    # A claim that is not the log's (the hold dropped, re-signed by the vault's own key) is refused by both.
    for field, lie in (("legal_hold", None), ("retain_until", current)):
        lied = copy.deepcopy(document["certificate"])
        lied["authoritative_copy"][field] = lie
        resigned = sign_certificate(lied, runtime.key)
        with pytest.raises(CertificateInvalid):
            verify_certificate(json.dumps(resigned), pem.encode())
        with pytest.raises(outside_verifier.Rejected):
            outside_verifier.verify_certificate(resigned, pem.encode())

    # The hold cleared behind the log's back, with the admin identity: the verifier names it.
    s3_admin_client.put_object_legal_hold(
        Bucket=runtime.authoritative.bucket,
        Key=doc.s3_key,
        VersionId=doc.s3_version_id,
        LegalHold={"Status": "OFF"},
    )
    found = verify(runtime.sources(), options=Options(concurrency=2))
    assert [(f.code, f.details["envelope_id"]) for f in found.findings] == [("Object.HoldMismatch", envelope_id)]


def test_a_vault_in_may_ask_for_a_longer_retention_never_a_shorter_one(
    client: Any, runtime: Runtime, tenant: Any, s3_admin_client: Any
) -> None:
    org_id, headers = tenant
    default = dt.datetime.now(dt.UTC) + dt.timedelta(days=runtime.settings.vault.retention_days)

    def vault_in(envelope_id: str, retain_until: str) -> Any:
        return client.post(
            f"{API}/envelopes/{envelope_id}/vault-in-upload",
            headers=headers,
            files=[("document", ("note.pdf", make_pdf(text=envelope_id), "application/pdf"))],
            data={"metadata": json.dumps({"retain_until": retain_until})},
        )

    shorter_id = create_envelope(client, headers)
    size = _log_size(runtime, org_id)
    refused = vault_in(shorter_id, iso(default - dt.timedelta(hours=2)))
    assert refused.status_code == 400 and refused.json()["code"] == "Retention.BelowDefault", refused.text
    assert _log_size(runtime, org_id) == size

    longer = iso((default + dt.timedelta(days=90)).replace(microsecond=0))
    envelope_id = create_envelope(client, headers)
    done = vault_in(envelope_id, longer)
    assert done.status_code == 201, done.text
    assert done.json()["vault"]["retain_until"] == longer
    (doc,) = _docs(runtime, envelope_id)
    lock = s3_admin_client.get_object_retention(
        Bucket=runtime.authoritative.bucket, Key=doc.s3_key, VersionId=doc.s3_version_id
    )["Retention"]
    assert iso(lock["RetainUntilDate"]) == longer


def test_racing_holds_and_extensions_each_happen_once(client: Any, runtime: Runtime, tenant: Any) -> None:
    """Under the envelope's row lock, two holds give one event and one 409; two extensions to different dates
    both succeed only in increasing order (an earlier date committed second would shorten: 409)."""
    _, headers = tenant
    for _ in range(4):
        envelope_id = _vaulted(client, headers)
        url = f"{API}/envelopes/{envelope_id}/legal-hold"
        a, b = together(
            lambda url=url: client.post(url, json={"reason": "first"}, headers=headers),
            lambda url=url: client.post(url, json={"reason": "second"}, headers=headers),
        )
        assert sorted([a.status_code, b.status_code]) == [200, 409], (a.text, b.text)
        assert (a if a.status_code == 409 else b).json()["code"] == "LegalHold.AlreadySet"
        assert len(_events(runtime, envelope_id, "vault.legal_hold_set")) == 1

        current = client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()["vault"]["retain_until"]
        dates = [iso(dt.datetime.fromisoformat(current) + dt.timedelta(days=d)) for d in (10, 20)]
        answers = together(
            *(
                lambda d=d, e=envelope_id: client.post(
                    f"{API}/envelopes/{e}/retention", json={"retain_until": d}, headers=headers
                )
                for d in dates
            )
        )
        events = [e["retain_until"] for e in _events(runtime, envelope_id, "vault.retention_extended")]
        if answers[0].status_code == 200:  # the earlier date committed first; the later one lengthened it again
            assert events == dates and answers[1].status_code == 200, [r.text for r in answers]
        else:  # the later date committed first: the earlier one would shorten it
            assert answers[0].json()["code"] == "Retention.CannotShorten" and events == [dates[1]]
        final = client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()["vault"]["retain_until"]
        assert final == dates[1]  # whatever the order, the later date stands, and never went back
