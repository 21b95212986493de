"""The audit trail: every event with actor, time, type, data and chain hashes; exact bytes that re-hash; CSV."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from typing import Any

from compliance.audit.trail import as_csv
from compliance.ledger.chain import verify_chain
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf


def _trail(client: Any, headers: dict[str, str], envelope_id: str, **extra: str) -> Any:
    return client.get(f"{API}/envelopes/{envelope_id}/audit", headers={**headers, **extra})


def test_trail_lists_every_event_and_its_bytes_rehash_to_the_chain_and_certificate(client: Any, tenant: Any) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    client.get(f"{API}/envelopes/{envelope_id}/vault/signed-url", headers={**headers, "User-Agent": "secret-agent/1"})
    trail = _trail(client, headers, envelope_id).json()
    types = [e["type"] for e in trail["events"]]
    assert types == ["envelope.created", "vault.vaulted_in", "vault.retrieval_issued"]
    entries = [base64.b64decode(e["entry"]) for e in trail["events"]]
    for event, entry in zip(trail["events"], entries, strict=True):
        assert hashlib.sha256(entry).hexdigest() == event["entry_hash"]
        assert event["actor"]["org_id"] == org_id and event["actor"]["key_prefix"] == headers["X-API-Key"][:11]
    parsed = verify_chain(envelope_id, entries)
    assert [p["prev"] for p in parsed] == [e["prev"] for e in trail["events"]]
    assert [e["seq"] for e in trail["events"]] == [0, 1, 2]
    certificate = client.get(f"{API}/envelopes/{envelope_id}/vault/certificate", headers=headers).json()
    head = certificate["certificate"]["ledger"]["chain_head"]
    assert head["entry_hash"] == trail["events"][-1]["entry_hash"]
    bundle_entries = [e["entry"] for e in certificate["certificate"]["ledger"]["bundle"]["events"]]
    assert bundle_entries == [e["entry"] for e in trail["events"]]


def test_the_log_keeps_no_client_address_or_user_agent(client: Any, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    client.get(f"{API}/envelopes/{envelope_id}", headers={**headers, "User-Agent": "secret-agent/1"})
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    raw = b"".join(base64.b64decode(e["entry"]) for e in _trail(client, headers, envelope_id).json()["events"])
    assert b"testclient" not in raw and b"secret-agent" not in raw and b"user_agent" not in raw
    for event in _trail(client, headers, envelope_id).json()["events"]:
        assert set(json.loads(base64.b64decode(event["entry"]))["actor"]) == {"org_id", "key_id", "key_prefix"}


def test_trail_as_csv_for_people(client: Any, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    by_accept = _trail(client, headers, envelope_id, Accept="text/csv")
    by_query = client.get(f"{API}/envelopes/{envelope_id}/audit?format=csv", headers=headers)
    assert by_accept.headers["content-type"].startswith("text/csv") and by_accept.text == by_query.text
    rows = list(csv.DictReader(io.StringIO(by_accept.text)))
    assert [r["type"] for r in rows] == ["envelope.created", "vault.vaulted_in"]
    assert rows[1]["actor_key_prefix"] == headers["X-API-Key"][:11] and rows[1]["prev"] == rows[0]["entry_hash"]
    assert json.loads(rows[1]["data"])["secured_party"]["name"] == "First Bank"
    assert client.get(f"{API}/envelopes/{envelope_id}/audit?format=xml", headers=headers).status_code == 400


def test_every_csv_row_rehashes_and_links_to_the_chain_from_the_csv_alone(client: Any, tenant: Any) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers).status_code == 200
    released = client.post(f"{API}/envelopes/{envelope_id}/vault-out", json={"reason": "payoff"}, headers=headers)
    assert released.status_code == 200, released.text
    text = client.get(f"{API}/envelopes/{envelope_id}/audit?format=csv", headers=headers).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 4
    previous = None
    for seq, row in enumerate(rows):  # nothing but the CSV: every row is a checked link of the chain
        entry = base64.b64decode(row["entry"], validate=True)
        assert hashlib.sha256(entry).hexdigest() == row["entry_hash"]
        value = json.loads(entry)
        assert (value["envelope"], value["seq"], value["index"]) == (row["envelope_id"], seq, int(row["leaf_index"]))
        assert (value["prev"] or "") == row["prev"] == (previous or "")
        assert (value["type"], value["time"], value["log"]) == (row["type"], row["time"], row["actor_org"])
        assert value["actor"]["key_id"] == row["actor_key_id"] and row["actor_key_id"].startswith("key_")
        assert value["data"] == json.loads(row["data"])
        previous = row["entry_hash"]
    assert {row["envelope_id"] for row in rows} == {envelope_id} and rows[0]["actor_org"] == org_id
    verify_chain(envelope_id, [base64.b64decode(row["entry"]) for row in rows])


def test_csv_cells_never_run_as_formulas() -> None:
    trail = {
        "events": [
            {
                "seq": 0,
                "leaf_index": 1,
                "time": "t",
                "type": "x",
                "actor": {"org_id": "=cmd|' /C calc'!A0"},
                "data": "@SUM(1)",
                "prev": None,
                "entry_hash": "-1",
            }
        ]
    }
    (row,) = list(csv.DictReader(io.StringIO(as_csv(trail))))
    assert row["actor_org"].startswith("'=") and row["data"].startswith("'") and row["entry_hash"] == "'-1"


def test_another_organisations_trail_is_not_found(client: Any, tenant: Any, make_key: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    _, other = make_key()
    for path in ("audit", "compliance", "vault/certificate"):
        response = client.get(f"{API}/envelopes/{envelope_id}/{path}", headers={"X-API-Key": other})
        assert response.status_code == 404 and response.json()["code"] == "Envelope.NotFound", path
    _, reader = make_key(["envelopes:read"])
    assert client.get(f"{API}/envelopes/{envelope_id}/audit", headers={"X-API-Key": reader}).status_code == 403
