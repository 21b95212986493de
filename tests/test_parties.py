"""The parties behind the record: MERS Org IDs, MINs (validated, unique, never reused), the secured party's
identity, and an organisation's default retention, through the operator CLI and the partner API.

Every refusal is checked to change nothing: neither the envelope table nor the organisation's log grows.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError
from sqlmodel import func, select, text

from compliance.certificates.issuance import sign_certificate
from compliance.certificates.offline_check import CertificateInvalid, verify_certificate
from compliance.ledger.events import log_size
from storage.models import Envelope, Event, MersMin
from tests import outside_verifier
from tests.helpers import API, create_envelope, together, upload
from tests.pdf_factory import make_pdf
from vault.registry_ids import check_digit, make_min
from vault.runtime import Runtime

ORG_MERS = "1234567"


def _state(runtime: Runtime, org_id: str) -> tuple[int, int]:
    """How many envelopes and log entries the organisation has: a refusal leaves both as they were."""
    with runtime.db.read_session() as session:
        envelopes = session.exec(select(func.count()).select_from(Envelope).where(Envelope.org_id == org_id)).one()
        return int(envelopes), log_size(session, org_id)


def _events(runtime: Runtime, org_id: str, event_type: str) -> list[dict[str, Any]]:
    with runtime.db.read_session() as session:
        rows = session.exec(select(Event).where(Event.org_id == org_id, Event.event_type == event_type)).all()
        return [json.loads(e.entry)["data"] for e in rows]


def _pem(client: Any) -> bytes:
    keys = client.get("/.well-known/evault/keys").json()["keys"]
    return str(next(k["pem"] for k in keys if k["use"] == "checkpoint")).encode()


def test_mod_10_weight_2_is_ibms_self_check_digit() -> None:
    # IBM's worked example of the Modulus 10 self-check digit (base 61248 -> 1), and Luhn's (7992739871 -> 3).
    assert check_digit("61248") == 1
    assert check_digit("7992739871") == 3
    minted = make_min(ORG_MERS, 42)
    assert minted.startswith(ORG_MERS + "0000000042") and len(minted) == 18
    assert check_digit(minted[:17]) == int(minted[17])


def test_operator_sets_and_clears_a_mers_org_id(evault: Any, runtime: Runtime, tenant: Any, make_key: Any) -> None:
    org_id, _ = tenant
    other_org, _ = make_key()
    code, out, err = evault("org", "set-mers-id", org_id, ORG_MERS, "--json")
    assert code == 0, err
    assert json.loads(out)["mers_org_id"] == ORG_MERS
    code, out, _ = evault("org", "list", "--json")
    assert {o["id"]: o["mers_org_id"] for o in json.loads(out)}[org_id] == ORG_MERS

    for args, expected in (
        ((other_org, ORG_MERS), "Mers.OrgIdTaken"),  # another organisation's
        ((org_id, "123456"), "Mers.InvalidOrgId"),
        ((org_id, "12345678"), "Mers.InvalidOrgId"),
        ((org_id, "abcdefg"), "Mers.InvalidOrgId"),
        (("org_" + "x" * 20, "7654321"), "Organisation.NotFound"),
    ):
        size = _state(runtime, org_id)[1]
        code, _, err = evault("org", "set-mers-id", *args)
        assert code == 1 and expected in err, (args, err)
        assert _state(runtime, org_id)[1] == size
    assert _events(runtime, org_id, "org.mers_org_id_set") == [{"mers_org_id": ORG_MERS}]

    code, out, err = evault("org", "set-mers-id", org_id, "--clear", "--json")
    assert code == 0 and json.loads(out)["mers_org_id"] is None, err
    assert _events(runtime, org_id, "org.mers_org_id_set")[-1] == {"mers_org_id": None}
    assert evault("org", "set-mers-id", other_org, ORG_MERS)[0] == 0  # free again


def test_a_min_is_validated_registered_shown_and_certified(
    client: Any, runtime: Runtime, tenant: Any, evault: Any, tmp_path: Path
) -> None:
    org_id, headers = tenant
    good = make_min(ORG_MERS, 1001)
    bad_digit = good[:17] + str((int(good[17]) + 1) % 10)

    before = _state(runtime, org_id)
    refused = client.post(f"{API}/envelopes", json={"kind": "paper", "title": "L", "min": good}, headers=headers)
    assert (refused.status_code, refused.json()["code"]) == (409, "Min.NoOrgId")
    assert _state(runtime, org_id) == before

    assert evault("org", "set-mers-id", org_id, ORG_MERS)[0] == 0
    before = _state(runtime, org_id)
    for value, status, code in (
        (bad_digit, 400, "Min.BadCheckDigit"),
        (good[:17], 400, "Min.Invalid"),
        (good + "0", 400, "Min.Invalid"),
        ("12345678901234567X", 400, "Min.Invalid"),
        (1234, 400, None),  # not a string: the body's own type check
        (make_min("7654321", 1001), 400, "Min.OrgIdMismatch"),
    ):
        answer = client.post(f"{API}/envelopes", json={"kind": "paper", "title": "L", "min": value}, headers=headers)
        assert answer.status_code == status, (value, answer.text)
        if code is not None:
            assert answer.json()["code"] == code, answer.text
    assert _state(runtime, org_id) == before

    envelope_id = create_envelope(client, headers, min=good)
    shown = client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()
    assert shown["min"] == good
    (created,) = [e for e in _events(runtime, org_id, "envelope.created") if e.get("min")]
    assert created["min"] == good

    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    response = client.get(f"{API}/envelopes/{envelope_id}/vault/certificate", headers=headers)
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["certificate"]["envelope"]["min"] == good
    assert document["certificate"]["organisation"] == {"id": org_id, "mers_org_id": ORG_MERS}
    verify_certificate(json.dumps(document), _pem(client))
    outside_verifier.verify_certificate(document, _pem(client))
    lied = copy.deepcopy(document["certificate"])
    lied["envelope"]["min"] = make_min(ORG_MERS, 1002)
    with pytest.raises(CertificateInvalid):
        verify_certificate(json.dumps(sign_certificate(lied, runtime.key)), _pem(client))
    with pytest.raises(outside_verifier.Rejected):
        outside_verifier.verify_certificate(sign_certificate(lied, runtime.key), _pem(client))
    pdf = client.get(f"{API}/envelopes/{envelope_id}/vault/certificate?format=pdf", headers=headers).content
    (tmp_path / "certificate.pdf").write_bytes(pdf)
    page = subprocess.run(
        ["pdftotext", "-raw", str(tmp_path / "certificate.pdf"), "-"], capture_output=True, text=True, check=True
    )
    assert f"MERS MIN: {good}" in page.stdout


def test_a_min_is_never_reused_even_after_its_envelope_is_gone(
    client: Any, runtime: Runtime, tenant: Any, evault: Any
) -> None:
    org_id, headers = tenant
    assert evault("org", "set-mers-id", org_id, ORG_MERS)[0] == 0
    taken = make_min(ORG_MERS, 7)
    first = create_envelope(client, headers, min=taken)
    assert client.post(f"{API}/envelopes/{first}/void", json={"reason": "withdrawn"}, headers=headers).is_success

    before = _state(runtime, org_id)
    again = client.post(f"{API}/envelopes", json={"kind": "paper", "title": "L", "min": taken}, headers=headers)
    assert (again.status_code, again.json()["code"]) == (409, "Min.AlreadyUsed")
    assert _state(runtime, org_id) == before

    # The registry keeps it for good: the database refuses to free or change a MIN.
    for statement in ("DELETE FROM mers_min", "UPDATE mers_min SET envelope_id = 'env_x'"):
        with pytest.raises(DBAPIError), runtime.db.session() as session:
            session.execute(text(statement))
    with runtime.db.read_session() as session:
        assert session.get(MersMin, taken) is not None


def test_two_creates_racing_for_one_min_have_one_winner(
    client: Any, runtime: Runtime, tenant: Any, evault: Any
) -> None:
    org_id, headers = tenant
    assert evault("org", "set-mers-id", org_id, ORG_MERS)[0] == 0
    for sequence in range(3):
        contested = make_min(ORG_MERS, 500 + sequence)

        def create(contested: str = contested) -> Any:
            body = {"kind": "paper", "title": "Race", "min": contested}
            return client.post(f"{API}/envelopes", json=body, headers=headers)

        a, b = together(create, create)
        assert sorted([a.status_code, b.status_code]) == [201, 409], (a.text, b.text)
        loser = a if a.status_code == 409 else b
        assert loser.json()["code"] == "Min.AlreadyUsed"
        with runtime.db.read_session() as session:
            assert session.exec(select(func.count()).select_from(MersMin).where(MersMin.min == contested)).one() == 1


def test_the_secured_party_may_be_an_organisation_or_a_registered_party(
    client: Any, runtime: Runtime, tenant: Any, make_key: Any
) -> None:
    org_id, headers = tenant
    investor_org, _ = make_key()

    named = create_envelope(client, headers, secured_party={"name": "First Bank"})  # a name only, as before
    of_vault = create_envelope(client, headers, secured_party={"name": "Investor", "org_id": investor_org})
    registered = create_envelope(client, headers, secured_party={"name": "Servicer", "mers_org_id": "7654321"})
    shown = client.get(f"{API}/envelopes/{of_vault}", headers=headers).json()["secured_party"]
    assert shown == {"name": "Investor", "org_id": investor_org}
    assert client.get(f"{API}/envelopes/{registered}", headers=headers).json()["secured_party"]["mers_org_id"]
    assert named

    before = _state(runtime, org_id)
    for party, code in (
        ({"name": "Ghost", "org_id": "org_" + "a" * 20}, "SecuredParty.UnknownOrganisation"),
        ({"name": "Ghost", "org_id": "not-an-org"}, "SecuredParty.UnknownOrganisation"),
        ({"name": "Bad", "mers_org_id": "12"}, "Mers.InvalidOrgId"),
        ({"name": "Bad", "mers_org_id": 1234567}, "Mers.InvalidOrgId"),
        ({"name": "Both", "org_id": investor_org, "mers_org_id": "7654321"}, "SecuredParty.AmbiguousIdentity"),
    ):
        answer = client.post(
            f"{API}/envelopes", json={"kind": "paper", "title": "L", "secured_party": party}, headers=headers
        )
        assert (answer.status_code, answer.json()["code"]) == (400, code), answer.text
    assert _state(runtime, org_id) == before

    # The vault-in records the identity as the assignee of record, and refuses an unknown one in its metadata.
    assert upload(client, headers, of_vault, make_pdf()).status_code == 201
    (vaulted,) = _events(runtime, org_id, "vault.vaulted_in")
    assert vaulted["secured_party"] == {"name": "Investor", "org_id": investor_org}
    certificate = client.get(f"{API}/envelopes/{of_vault}/vault/certificate", headers=headers).json()
    assert certificate["certificate"]["assignee_of_record"] == {"name": "Investor", "org_id": investor_org}

    pdf = make_pdf()
    files = [
        ("document", ("a.pdf", pdf, "application/pdf")),
        ("metadata", (None, json.dumps({"secured_party": {"name": "X", "org_id": "org_" + "b" * 20}}), None)),
    ]
    before = _state(runtime, org_id)
    answer = client.post(f"{API}/envelopes/{named}/vault-in-upload", files=files, headers=headers)
    assert (answer.status_code, answer.json()["code"]) == (400, "SecuredParty.UnknownOrganisation"), answer.text
    assert _state(runtime, org_id) == before


def _retain_until(client: Any, headers: dict[str, str], envelope_id: str) -> dt.datetime:
    return dt.datetime.fromisoformat(
        client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()["vault"]["retain_until"]
    )


def test_an_organisations_retention_default_is_used_at_vault_in(
    client: Any, runtime: Runtime, tenant: Any, evault: Any
) -> None:
    org_id, headers = tenant
    settings_days = runtime.settings.vault.retention_days
    code, out, err = evault("org", "set-retention", org_id, "30", "--json")
    assert code == 0 and json.loads(out)["retention_days"] == 30, err
    assert _events(runtime, org_id, "org.retention_default_set") == [
        {"retention_days": 30, "previous_retention_days": None}
    ]

    started = dt.datetime.now(dt.UTC)
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    kept = _retain_until(client, headers, envelope_id) - started
    assert dt.timedelta(days=30) - dt.timedelta(seconds=5) <= kept <= dt.timedelta(days=30, seconds=60)

    # Longer than the organisation's default may be asked for; shorter is refused, with nothing written.
    shorter = (started + dt.timedelta(days=20)).isoformat()
    refused = create_envelope(client, headers)
    files = [
        ("document", ("a.pdf", make_pdf(), "application/pdf")),
        ("metadata", (None, json.dumps({"retain_until": shorter}), None)),
    ]
    before = _state(runtime, org_id)
    answer = client.post(f"{API}/envelopes/{refused}/vault-in-upload", files=files, headers=headers)
    assert (answer.status_code, answer.json()["code"]) == (400, "Retention.BelowDefault"), answer.text
    assert _state(runtime, org_id) == before

    for days in ("0", "-3", "36601"):
        code, _, err = evault("org", "set-retention", org_id, days)
        assert code != 0, days
    assert len(_events(runtime, org_id, "org.retention_default_set")) == 1

    # Cleared: the settings' default is the fallback again.
    assert evault("org", "set-retention", org_id, "--clear")[0] == 0
    fallback = create_envelope(client, headers)
    started = dt.datetime.now(dt.UTC)
    assert upload(client, headers, fallback, make_pdf()).status_code == 201
    kept = _retain_until(client, headers, fallback) - started
    assert abs(kept - dt.timedelta(days=settings_days)) < dt.timedelta(seconds=60)
