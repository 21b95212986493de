"""Transfers of control and location between organisations, over HTTP on the real stack (docs/transfers.md).

Every transition and every refusal: initiate, escrow, accept, reject, cancel, confirm, expiry; the receiver's
keys see and retrieve the identical bytes after acceptance, the former controller's get 404; a custodian may
read but not release; the certificate names the present and verifies offline; condition 4 and the verifier
re-derive control from the chain. Races run on PostgreSQL as on SQLite (one winner, the others 409).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from compliance.certificates.offline_check import verify_certificate
from compliance.ledger.events import log_size
from compliance.verifier import Options, verify
from storage.ids import iso, utcnow
from storage.models import Envelope, Event, Transfer, WebhookDelivery
from tests.helpers import API, EXPIRY_LEAD, create_envelope, sleep_past, together, upload
from tests.pdf_factory import make_pdf
from vault.expiry import sweep_deadlines
from vault.runtime import Runtime

REPO = Path(__file__).resolve().parents[1]
HOOK = "https://93.184.215.14/hooks"  # a public address: configurable, never called (no sender runs in tests)
TRIALS = 4
Party = tuple[str, dict[str, str]]


def _deadline() -> datetime:
    return utcnow() + EXPIRY_LEAD


@pytest.fixture
def parties(make_key: Callable[..., tuple[str, str]]) -> tuple[Party, Party, Party]:
    """Three organisations: A (registers the record), B (receives it), C (a bystander)."""
    made = [make_key() for _ in range(3)]
    a, b, c = ((org, {"X-API-Key": raw}) for org, raw in made)
    return a, b, c


def _vaulted(client: Any, headers: dict[str, str], pdf: bytes | None = None) -> str:
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, pdf or make_pdf(text=f"Note {time.time()}")).status_code == 201
    return envelope_id


def _offer(
    client: Any, headers: dict[str, str], envelope_id: str, to: str, kind: str = "control_and_location", **extra: Any
) -> Any:
    body = {"to_organisation": to, "type": kind, **extra}
    return client.post(f"{API}/envelopes/{envelope_id}/transfers", json=body, headers=headers)


def _offered(client: Any, headers: dict[str, str], envelope_id: str, to: str, **extra: Any) -> str:
    response = _offer(client, headers, envelope_id, to, **extra)
    assert response.status_code == 201, response.text
    transfer_id: str = response.json()["id"]
    return transfer_id


def _step(client: Any, headers: dict[str, str], transfer_id: str, action: str, **body: Any) -> Any:
    return client.post(f"{API}/transfers/{transfer_id}/{action}", json=body, headers=headers)


def _code(response: Any) -> tuple[int, str]:
    return response.status_code, response.json().get("code")


def _events(runtime: Runtime, envelope_id: str) -> list[str]:
    with runtime.db.read_session() as session:
        rows = session.exec(select(Event).where(Event.envelope_id == envelope_id).order_by(col(Event.chain_seq)))
        return [e.event_type for e in rows]


def _steps_of(runtime: Runtime, transfer_id: str) -> list[str]:
    """The chain's entries about one transfer, in order."""
    with runtime.db.read_session() as session:
        rows = session.exec(
            select(Event)
            .where(col(Event.envelope_id).is_not(None), col(Event.event_type).startswith("transfer."))
            .order_by(col(Event.id))
        )
        return [e.event_type for e in rows if json.loads(e.entry)["data"].get("transfer_id") == transfer_id]


def _authoritative(client: Any, headers: dict[str, str], envelope_id: str) -> Any:
    return client.get(f"{API}/envelopes/{envelope_id}/vault/signed-url", headers=headers)


def _public_pem(client: Any) -> bytes:
    keys = client.get("/.well-known/evault/keys").json()["keys"]
    return str(next(k["pem"] for k in keys if k["use"] == "checkpoint")).encode()


def _certificate(client: Any, headers: dict[str, str], envelope_id: str) -> dict[str, Any]:
    response = client.get(f"{API}/envelopes/{envelope_id}/vault/certificate", headers=headers)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    verify_certificate(json.dumps(document), _public_pem(client))  # raises unless it verifies offline
    return document


def test_control_and_location_move_to_the_receiver_after_escrow(
    client: Any, runtime: Runtime, parties: tuple[Party, Party, Party]
) -> None:
    (a, ah), (b, bh), (c, ch) = parties
    for headers in (ah, bh):
        assert client.patch(f"{API}/webhook", json={"url": HOOK}, headers=headers).status_code == 200
    pdf = make_pdf(pages=2, text="eNote 42")
    envelope_id = _vaulted(client, ah, pdf)
    offered = _offer(client, ah, envelope_id, b, note="to the warehouse bank")
    assert offered.status_code == 201, offered.text
    transfer = offered.json()
    assert transfer["status"] == "pending" and transfer["id"].startswith("tr_")
    assert offered.headers["Location"] == f"{API}/transfers/{transfer['id']}"
    tid = transfer["id"]

    # Escrow: no authoritative retrieval, vault-out or second transfer; marked copies still.
    assert _code(_authoritative(client, ah, envelope_id)) == (409, "Transfer.Pending")
    out = client.post(f"{API}/envelopes/{envelope_id}/vault-out", json={"reason": "payoff"}, headers=ah)
    assert _code(out) == (409, "Transfer.Pending")
    assert _code(_offer(client, ah, envelope_id, c)) == (409, "Transfer.Pending")
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=ah).status_code == 200

    # Who may see and answer it.
    incoming = client.get(f"{API}/transfers", params={"direction": "incoming"}, headers=bh).json()["items"]
    assert [t["id"] for t in incoming] == [tid]
    assert client.get(f"{API}/transfers", params={"direction": "incoming"}, headers=ah).json()["items"] == []
    assert _code(client.get(f"{API}/transfers/{tid}", headers=ch)) == (404, "Transfer.NotFound")
    assert _code(_step(client, ch, tid, "accept")) == (404, "Transfer.NotFound")
    assert _code(_step(client, ah, tid, "accept")) == (403, "Transfer.NotReceiver")
    assert _code(_step(client, bh, tid, "cancel")) == (403, "Transfer.NotInitiator")
    assert _code(client.get(f"{API}/envelopes/{envelope_id}", headers=bh)) == (404, "Envelope.NotFound")

    accepted = _step(client, bh, tid, "accept")
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "completed" and accepted.json()["accepted_at"]
    assert _code(_step(client, bh, tid, "accept")) == (409, "Transfer.NotPending")
    assert _code(_step(client, ah, tid, "cancel")) == (409, "Transfer.NotPending")

    # The record is the receiver's: its keys see it and get the identical bytes; the former controller's don't.
    assert client.get(f"{API}/envelopes/{envelope_id}", headers=bh).status_code == 200
    listed = client.get(f"{API}/envelopes", headers=bh).json()["items"]
    assert [e["id"] for e in listed] == [envelope_id]
    (doc,) = _authoritative(client, bh, envelope_id).json()["documents"]
    assert httpx.get(doc["url"]).content == pdf and doc["sha256"] == hashlib.sha256(pdf).hexdigest()
    assert _code(client.get(f"{API}/envelopes/{envelope_id}", headers=ah)) == (404, "Envelope.NotFound")
    assert _code(_authoritative(client, ah, envelope_id)) == (404, "Envelope.NotFound")
    assert client.get(f"{API}/transfers/{tid}", headers=ah).json()["status"] == "completed"

    # One history: the chain in A's log up to the hand-off, then in B's: the receiver's retrieval lands there.
    events = _events(runtime, envelope_id)
    assert events[-6:] == [
        "transfer.initiated",
        "vault.copy_issued",  # a marked copy during escrow
        "transfer.accepted",
        "transfer.completed",  # the hand-off: the chain's last entry in A's log
        "transfer.arrived",  # ... and its first in B's
        "vault.retrieval_issued",  # by the receiver's key, in the receiver's log
    ]
    with runtime.db.read_session() as session:
        chain = session.exec(select(Event).where(Event.envelope_id == envelope_id).order_by(col(Event.chain_seq)))
        logs = [e.org_id for e in chain]
        assert logs == [a] * (len(events) - 2) + [b, b]
        completed = session.exec(select(Event).where(Event.org_id == a, Event.event_type == "transfer.completed")).one()
        arrived = session.exec(select(Event).where(Event.org_id == b, Event.event_type == "transfer.arrived")).one()
        assert session.exec(select(Event).where(Event.event_type == "transfer.recorded")).all() == []
        deliveries = session.exec(select(WebhookDelivery).where(WebhookDelivery.event_type == "transfer.completed"))
        assert sorted(d.org_id for d in deliveries) == sorted([a, b])
        retrieval = session.exec(select(WebhookDelivery).where(WebhookDelivery.event_type == "vault.copy_issued")).all()
        assert [d.org_id for d in retrieval] == [a]  # issued while A held it
    assert json.loads(completed.entry)["data"]["next_log"] == b
    named = json.loads(arrived.entry)["data"]
    assert (named["log"], named["leaf_index"], named["entry_hash"]) == (a, completed.leaf_index, completed.entry_hash)
    assert json.loads(arrived.entry)["prev"] == completed.entry_hash

    # The certificate tells the present, and checks offline.
    check = client.get(f"{API}/envelopes/{envelope_id}/compliance?checkpoint=now", headers=bh).json()
    assert check["verdict"] == "pass", check
    control = check["conditions"][3]["evidence"]["control"]
    assert (control["controller"], control["custodian"], len(control["changes"])) == (b, b, 1)
    body = _certificate(client, bh, envelope_id)["certificate"]
    assert body["control"] == {"organisation": a, "controller": b, "custodian": b}
    (shown,) = body["transfers"]
    assert (shown["id"], shown["from_org"], shown["to_org"], shown["status"]) == (tid, a, b, "completed")
    assert shown["initiated_at"] and shown["accepted_at"] and shown["completed_at"]


def test_a_round_trip_is_two_transfers_and_the_verifier_stays_clean(
    client: Any, runtime: Runtime, parties: tuple[Party, Party, Party]
) -> None:
    (a, ah), (b, bh), _ = parties
    envelope_id = _vaulted(client, ah)
    first = _offered(client, ah, envelope_id, b)
    assert _step(client, bh, first, "accept").status_code == 200
    back = _offered(client, bh, envelope_id, a, kind="control_and_location")
    assert _step(client, ah, back, "accept").status_code == 200
    assert client.get(f"{API}/envelopes/{envelope_id}", headers=ah).status_code == 200
    assert _code(client.get(f"{API}/envelopes/{envelope_id}", headers=bh)) == (404, "Envelope.NotFound")
    body = _certificate(client, ah, envelope_id)["certificate"]
    assert body["control"] == {"organisation": a, "controller": a, "custodian": a}
    assert [(t["from_org"], t["to_org"]) for t in body["transfers"]] == [(a, b), (b, a)]
    assert body["conditions"]["verdict"] == "pass", body["conditions"]
    result = verify(runtime.sources(), options=Options(concurrency=2, record=False))
    assert result.clean, result.findings


def test_reject_cancel_and_confirm(client: Any, runtime: Runtime, parties: tuple[Party, Party, Party]) -> None:
    (_, ah), (b, bh), _ = parties
    envelope_id = _vaulted(client, ah)
    tid = _offered(client, ah, envelope_id, b)
    rejected = _step(client, bh, tid, "reject", reason="price not agreed")
    assert (rejected.status_code, rejected.json()["status"], rejected.json()["reason"]) == (
        200,
        "rejected",
        "price not agreed",
    )
    assert _code(_step(client, bh, tid, "accept")) == (409, "Transfer.NotPending")
    assert _authoritative(client, ah, envelope_id).status_code == 200  # escrow lifted, control stayed

    tid = _offered(client, ah, envelope_id, b)
    assert _step(client, ah, tid, "cancel").json()["status"] == "cancelled"
    assert _code(_step(client, ah, tid, "confirm")) == (409, "Transfer.NotPending")
    assert _code(_step(client, bh, tid, "accept")) == (409, "Transfer.NotPending")

    # Three steps: acceptance holds the escrow until the initiator confirms.
    tid = _offered(client, ah, envelope_id, b, confirm_required=True)
    assert _code(_step(client, ah, tid, "confirm")) == (409, "Transfer.NotAccepted")
    assert _step(client, bh, tid, "accept").json()["status"] == "accepted"
    assert _code(_authoritative(client, ah, envelope_id)) == (409, "Transfer.Pending")
    assert _code(client.get(f"{API}/envelopes/{envelope_id}", headers=bh)) == (404, "Envelope.NotFound")
    assert _code(_step(client, bh, tid, "confirm")) == (403, "Transfer.NotInitiator")
    assert _step(client, ah, tid, "confirm").json()["status"] == "completed"
    assert _authoritative(client, bh, envelope_id).status_code == 200
    steps = [e for e in _events(runtime, envelope_id) if e.startswith("transfer.")]
    assert steps == [
        "transfer.initiated",
        "transfer.rejected",
        "transfer.initiated",
        "transfer.cancelled",
        "transfer.initiated",
        "transfer.accepted",
        "transfer.completed",
        "transfer.arrived",  # the hand-off of control: the chain goes on in B's log
    ]
    check = client.get(f"{API}/envelopes/{envelope_id}/compliance?checkpoint=now", headers=bh).json()
    assert check["verdict"] == "pass", check


def test_location_makes_a_custodian_that_reads_but_cannot_release_and_release_is_not_pass(
    client: Any, parties: tuple[Party, Party, Party]
) -> None:
    (a, ah), (b, bh), (c, _) = parties
    envelope_id = _vaulted(client, ah)
    tid = _offered(client, ah, envelope_id, b, kind="location")
    assert _step(client, bh, tid, "accept").status_code == 200
    assert _authoritative(client, bh, envelope_id).status_code == 200
    out = client.post(f"{API}/envelopes/{envelope_id}/vault-out", json={"reason": "payoff"}, headers=bh)
    assert _code(out) == (403, "Transfer.NotController")
    assert _code(_offer(client, bh, envelope_id, c, kind="control")) == (403, "Transfer.NotController")
    assert _authoritative(client, ah, envelope_id).status_code == 200  # control stayed with A

    payoff = {"reason": "transfer", "transferee": {"vault_id": "vault.investor.example"}}
    assert client.post(f"{API}/envelopes/{envelope_id}/vault-out", json=payoff, headers=ah).status_code == 200
    document = _certificate(client, ah, envelope_id)
    body = document["certificate"]
    assert body["control"] == {"organisation": a, "controller": a, "custodian": b}
    assert body["conditions"]["verdict"] == "released"
    maintained = body["conditions"]["conditions"][2]
    assert maintained["status"] == "released" and "vault.investor.example" in maintained["reasons"][0]
    assert body["vault_out"]["reason"] == "transfer" and body["vault_out"]["at"]
    assert _code(_offer(client, ah, envelope_id, c)) == (409, "Vault.Released")


def test_refused_initiations_change_nothing(client: Any, runtime: Runtime, parties: tuple[Party, Party, Party]) -> None:
    (a, ah), (b, bh), (c, ch) = parties
    envelope_id = _vaulted(client, ah)
    unvaulted = create_envelope(client, ah)
    past = iso(utcnow() - timedelta(minutes=1))
    with runtime.db.read_session() as session:
        before = [log_size(session, org) for org in (a, b, c)]
    cases = [
        (_offer(client, ah, envelope_id, b, kind="ownership"), (400, "Transfer.InvalidType")),
        (_offer(client, ah, envelope_id, "org_" + "x" * 20), (400, "Transfer.InvalidReceiver")),
        (_offer(client, ah, envelope_id, a), (400, "Transfer.InvalidReceiver")),
        (_offer(client, ah, envelope_id, b, expires_at=past), (400, "Transfer.InvalidExpiry")),
        (_offer(client, ah, envelope_id, b, note="x" * 1001), (400, "Request.FieldTooLong")),
        (_offer(client, ah, unvaulted, b), (409, "Vault.NotVaulted")),
        (_offer(client, ch, envelope_id, b), (404, "Envelope.NotFound")),
        (_step(client, bh, "tr_" + "0" * 20, "accept"), (404, "Transfer.NotFound")),
    ]
    for response, expected in cases:
        assert _code(response) == expected, response.text
    with runtime.db.read_session() as session:
        assert [log_size(session, org) for org in (a, b, c)] == before
        assert session.exec(select(Transfer)).all() == []


def test_a_transfer_past_its_deadline_expires_and_control_stays(
    client: Any, runtime: Runtime, parties: tuple[Party, Party, Party]
) -> None:
    (_, ah), (b, bh), _ = parties
    envelope_id = _vaulted(client, ah)
    deadline = _deadline()
    tid = _offered(client, ah, envelope_id, b, expires_at=iso(deadline))
    sleep_past(deadline, 0.2)
    late = _step(client, bh, tid, "accept")
    assert _code(late) == (409, "Transfer.NotPending") and late.json()["details"]["status"] == "expired"
    assert _authoritative(client, ah, envelope_id).status_code == 200

    deadline = _deadline()
    swept_id = _offered(client, ah, envelope_id, b, expires_at=iso(deadline))
    sleep_past(deadline, 0.2)
    swept = sweep_deadlines(runtime.custody(), 60)
    assert swept.transfers_expired == [swept_id]
    assert sweep_deadlines(runtime.custody(), 60).transfers_expired == []
    assert client.get(f"{API}/transfers/{swept_id}", headers=bh).json()["status"] == "expired"
    assert _events(runtime, envelope_id).count("transfer.expired") == 2
    listed = client.get(f"{API}/transfers", params={"status": "expired"}, headers=ah).json()["items"]
    assert sorted(t["id"] for t in listed) == sorted([tid, swept_id])


def test_an_initiation_is_idempotent(client: Any, runtime: Runtime, parties: tuple[Party, Party, Party]) -> None:
    (_, ah), (b, _), _ = parties
    envelope_id = _vaulted(client, ah)
    headers = {**ah, "Idempotency-Key": "offer-1"}
    first = _offer(client, headers, envelope_id, b)
    again = _offer(client, headers, envelope_id, b)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers.get("Idempotent-Replayed") == "true"
    assert _events(runtime, envelope_id).count("transfer.initiated") == 1


def test_accept_cancel_and_reject_race_with_one_winner(
    client: Any, runtime: Runtime, parties: tuple[Party, Party, Party]
) -> None:
    (_, ah), (b, bh), _ = parties
    envelope_id = _vaulted(client, ah)
    for _ in range(TRIALS):
        if client.get(f"{API}/envelopes/{envelope_id}", headers=ah).status_code != 200:
            envelope_id = _vaulted(client, ah)
        tid = _offered(client, ah, envelope_id, b)
        answers = together(
            lambda tid=tid: _step(client, bh, tid, "accept"),
            lambda tid=tid: _step(client, ah, tid, "cancel"),
            lambda tid=tid: _step(client, bh, tid, "reject", reason="no"),
        )
        codes = sorted(r.status_code for r in answers)
        assert codes == [200, 409, 409], [r.text for r in answers]
        assert all(r.json()["code"] == "Transfer.NotPending" for r in answers if r.status_code == 409)
        winner = next(r for r in answers if r.status_code == 200).json()["status"]
        completed = ["transfer.accepted", "transfer.completed", "transfer.arrived"]  # the hand-off in B's log
        ending = {"completed": completed}.get(winner, [f"transfer.{winner}"])
        assert _steps_of(runtime, tid) == ["transfer.initiated", *ending]
        with runtime.db.read_session() as session:
            row = session.get(Transfer, tid)
        assert row is not None and row.status == winner


def test_accept_racing_expiry_has_one_outcome(
    client: Any, runtime: Runtime, parties: tuple[Party, Party, Party]
) -> None:
    (_, ah), (b, bh), _ = parties
    for _ in range(TRIALS):
        envelope_id = _vaulted(client, ah)
        deadline = _deadline()
        tid = _offered(client, ah, envelope_id, b, expires_at=iso(deadline))
        sleep_past(deadline, 0.05)
        accept, sweep = together(
            lambda tid=tid: _step(client, bh, tid, "accept"),
            lambda: sweep_deadlines(runtime.custody(), 60),
        )
        assert not isinstance(sweep, Exception), sweep
        assert _code(accept) == (409, "Transfer.NotPending"), accept.text
        assert _steps_of(runtime, tid) == ["transfer.initiated", "transfer.expired"]


def test_the_verifier_reports_a_controller_the_chain_does_not_support(
    client: Any, runtime: Runtime, parties: tuple[Party, Party, Party]
) -> None:
    (_, ah), (b, bh), (c, _) = parties
    envelope_id = _vaulted(client, ah)
    assert _step(client, bh, _offered(client, ah, envelope_id, b), "accept").status_code == 200
    assert verify(runtime.sources(), options=Options(concurrency=2, record=False)).clean
    with runtime.db.session() as session:  # an operator hands the record to C in SQL alone
        envelope = session.get(Envelope, envelope_id)
        assert envelope is not None
        envelope.controller_org_id = c
        session.add(envelope)
    found = verify(runtime.sources(), options=Options(concurrency=2, record=False)).findings
    planted = [f for f in found if f.code == "Control.Unsupported"]
    assert [f.details.get("envelope_id") for f in planted] == [envelope_id], found
    assert planted[0].details["changed"]["controller"] == {"row": c, "ledger": b}
    check = client.get(f"{API}/envelopes/{envelope_id}/compliance?checkpoint=now", headers=bh).json()
    assert check["verdict"] == "fail" and "Control.Unsupported" in " ".join(check["conditions"][5]["reasons"])


def _receipt_cli(tmp_path: Path, receipt: Any, pem: bytes) -> subprocess.CompletedProcess[str]:
    """`evault receipt verify` in an empty directory, with no EVAULT_* variable: only the files it is given."""
    work = tmp_path / "auditor"
    work.mkdir(exist_ok=True)
    (work / "receipt.json").write_text(json.dumps(receipt))
    (work / "vault.pem").write_bytes(pem)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVAULT_")} | {"PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "vault.cli.main", "receipt", "verify", "receipt.json", "--public-key", "vault.pem"]
    return subprocess.run(command, env=env, cwd=work, capture_output=True, text=True, timeout=120, check=False)


def test_both_parties_get_a_receipt_that_verifies_offline_and_any_altered_field_fails(
    client: Any, parties: tuple[Party, Party, Party], tmp_path: Path
) -> None:
    (a, ah), (b, bh), (_, ch) = parties
    pdf = make_pdf(text="eNote for the receipt")
    envelope_id = _vaulted(client, ah, pdf)
    tid = _offered(client, ah, envelope_id, b, kind="control")
    assert _code(client.get(f"{API}/transfers/{tid}/receipt", headers=ah)) == (409, "Receipt.NotCompleted")
    accepted = _step(client, bh, tid, "accept").json()
    assert _code(client.get(f"{API}/transfers/{tid}/receipt", headers=ch)) == (404, "Transfer.NotFound")
    mine = client.get(f"{API}/transfers/{tid}/receipt", headers=ah)
    theirs = client.get(f"{API}/transfers/{tid}/receipt", headers=bh)
    assert mine.status_code == theirs.status_code == 200, (mine.text, theirs.text)
    receipt = theirs.json()
    fields = receipt["receipt"]["fields"]
    assert receipt["receipt"]["kind"] == "transfer" and receipt["receipt"]["envelope_id"] == envelope_id
    assert (fields["from_organisation"], fields["to_organisation"], fields["type"]) == (a, b, "control")
    assert (fields["controller"], fields["custodian"], fields["accepted_at"]) == (b, a, accepted["accepted_at"])
    assert [d["sha256"] for d in fields["documents"]] == [hashlib.sha256(pdf).hexdigest()]
    positions = {e["role"]: e["leaf_index"] for e in receipt["receipt"]["events"]}
    assert (positions["initiate"], positions["accept"]) == (
        accepted["log"]["initiated_index"],
        accepted["log"]["accepted_index"],
    )
    pem = _public_pem(client)
    run = _receipt_cli(tmp_path, receipt, pem)
    assert run.returncode == 0, run.stdout + run.stderr
    for name, value in (("to_organisation", a), ("accepted_at", "2020-01-01T00:00:00Z"), ("type", "location")):
        altered = copy.deepcopy(receipt)
        altered["receipt"]["fields"][name] = value
        run = _receipt_cli(tmp_path, altered, pem)
        assert run.returncode == 2, (name, run.stdout + run.stderr)
