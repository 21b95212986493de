"""People named as parties never reach the permanent log: it holds per-subject commitments, the database the
values; erasing a person removes their values and key, and breaks no chain, proof or other person's record."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from typing import Any

import rfc8785
from sqlmodel import select

from storage.models import DataSubject, Event
from tests import outside_verifier
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from vault.runtime import Runtime


def _people() -> list[dict[str, str]]:
    tag = uuid.uuid4().hex[:8]
    return [
        {"name": f"Ada Borrower {tag}", "email": f"ada.{tag}@example.com", "role": "borrower"},
        {"name": f"Bob Cosigner {tag}", "email": f"bob.{tag}@example.com", "role": "co-borrower"},
    ]


def _log_bytes(runtime: Runtime, org_id: str) -> bytes:
    with runtime.db.read_session() as session:
        return b"\n".join(e.entry for e in session.exec(select(Event).where(Event.org_id == org_id)))


def _vaulted(client: Any, headers: dict[str, str], people: list[dict[str, str]]) -> str:
    envelope_id = create_envelope(client, headers, parties=people)
    assert upload(client, headers, envelope_id, make_pdf(pages=1)).status_code == 201
    return envelope_id


def test_the_log_holds_commitments_and_the_api_the_people(client: Any, runtime: Runtime, tenant: Any) -> None:
    org_id, headers = tenant
    people = _people()
    envelope_id = _vaulted(client, headers, people)

    log = _log_bytes(runtime, org_id)
    for person in people:
        for value in (person["name"], person["email"]):
            assert value.encode() not in log, "personal data reached the permanent log"

    parties = client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()["parties"]
    assert [{k: p[k] for k in ("name", "email", "role")} for p in parties] == people
    assert all(p["state"] == "shown" and p["subject"].startswith("sub_") for p in parties)

    with runtime.db.read_session() as session:
        entry = next(
            json.loads(e.entry)
            for e in session.exec(select(Event).where(Event.envelope_id == envelope_id, Event.chain_seq == 0))
        )
        subjects = {s.id: s for s in session.exec(select(DataSubject).where(DataSubject.envelope_id == envelope_id))}
    assert entry["type"] == "envelope.created"
    for reference, person in zip(entry["data"]["parties"], people, strict=True):
        key = subjects[reference["subject"]].key
        assert key is not None and len(key) == 32
        assert reference["commitment"] == hmac.new(key, rfc8785.dumps(person), hashlib.sha256).hexdigest()
    assert len({s.key for s in subjects.values()}) == len(people), "one key per subject"

    trail = client.get(f"{API}/envelopes/{envelope_id}/audit", headers=headers).json()
    assert sorted(v["email"] for v in trail["personal_data"].values()) == sorted(p["email"] for p in people)


def test_erasure_shreds_one_person_and_breaks_no_proof(
    client: Any, runtime: Runtime, tenant: Any, evault: Callable[..., tuple[int, str, str]]
) -> None:
    org_id, headers = tenant
    people = _people()
    envelope_id = _vaulted(client, headers, people)
    other_id = _vaulted(client, headers, _people())
    parties = client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()["parties"]
    ada, bob = parties[0]["subject"], parties[1]["subject"]

    code, out, err = evault("erase", "--org", org_id, "--email", people[0]["email"].upper(), "--json")
    assert code == 0, err
    assert json.loads(out) == [{"subject": ada, "envelope_id": envelope_id, "erased_now": True}]
    code, out, _ = evault("erase", ada, "--json")
    assert code == 0 and json.loads(out)[0]["erased_now"] is False, "a second erasure records nothing"

    after = client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()["parties"]
    assert after[0] == {"subject": ada, "state": "erased"}
    assert after[1]["email"] == people[1]["email"] and after[1]["subject"] == bob
    other = client.get(f"{API}/envelopes/{other_id}", headers=headers).json()["parties"]
    assert all(p["state"] == "shown" for p in other), "other people are untouched"
    with runtime.db.read_session() as session:
        row = session.get(DataSubject, ada)
        assert row is not None and row.key is None and row.clear is None and row.erased_at is not None

    trail = client.get(f"{API}/envelopes/{envelope_id}/audit", headers=headers).json()
    assert trail["personal_data"][ada] == {"state": "erased"}
    assert trail["events"][-1]["type"] == "subject.erased" and trail["events"][-1]["data"] == {"subject": ada}
    assert people[0]["email"] not in json.dumps(trail)

    bundle = client.get(f"{API}/envelopes/{envelope_id}/proof", headers=headers).json()
    pem = next(k["pem"] for k in client.get("/.well-known/evault/keys").json()["keys"] if k["use"] == "checkpoint")
    events = outside_verifier.verify_bundle(bundle, pem.encode())
    assert events[-1]["type"] == "subject.erased"
    verdict = client.get(f"{API}/envelopes/{envelope_id}/compliance", headers=headers).json()
    assert verdict["verdict"] != "fail", verdict


def test_erase_refuses_what_is_not_a_subject(evault: Callable[..., tuple[int, str, str]]) -> None:
    code, _, err = evault("erase", "sub_" + "0" * 20)
    assert code == 1 and "Subject.NotFound" in err
    code, _, err = evault("erase", "env_nope")
    assert code == 1 and "Subject.InvalidId" in err
    code, _, err = evault("erase")
    assert code == 2
