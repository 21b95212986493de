"""One history across organisations (issue 22), over HTTP on the real stack (docs/transfers.md, bundle v3 in
docs/evidence-formats.md §7.1).

A transfers control to B; B's retrieval after the acceptance lands in B's log; B's proof bundle (v3) proves the
whole history offline with ``evault log verify`` and the outside verifier; A's bundle proves its part up to the
hand-off; a round trip A -> B -> A proves three segments; a tampered hand-off entry, a dropped log or segment and
a v2 downgrade are refused by name; the verifier stays clean, and a controller edited in SQL is reported.
"""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from compliance.bundles.proof_bundle import verify_bundle
from compliance.evidence_package.offline_check import verify_package
from compliance.ledger.event_catalogue import ENVELOPE_EXPIRED
from compliance.ledger.events import Actor, append_event
from compliance.ledger.log_error import LogError
from compliance.verifier import Options, verify
from storage.ids import utcnow
from storage.models import Envelope
from tests import outside_verifier
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from vault.cli.main import main
from vault.runtime import Runtime

Party = tuple[str, dict[str, str]]


@pytest.fixture
def parties(make_key: Callable[..., tuple[str, str]]) -> tuple[Party, Party, Party]:
    """A registers the record, B receives it, C is a bystander."""
    made = [make_key() for _ in range(3)]
    a, b, c = ((org, {"X-API-Key": raw}) for org, raw in made)
    return a, b, c


def _pem(client: Any) -> bytes:
    keys = client.get("/.well-known/evault/keys").json()["keys"]
    return str(next(k["pem"] for k in keys if k["use"] == "checkpoint")).encode()


def _vaulted(client: Any, headers: dict[str, str]) -> str:
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf(text=f"Note {time.time()}")).status_code == 201
    return envelope_id


def _transfer(client: Any, giver: dict[str, str], taker: dict[str, str], envelope_id: str, to: str) -> None:
    body = {"to_organisation": to, "type": "control_and_location"}
    offered = client.post(f"{API}/envelopes/{envelope_id}/transfers", json=body, headers=giver)
    assert offered.status_code == 201, offered.text
    accepted = client.post(f"{API}/transfers/{offered.json()['id']}/accept", json={}, headers=taker)
    assert accepted.status_code == 200 and accepted.json()["status"] == "completed", accepted.text


def _bundle(client: Any, headers: dict[str, str], envelope_id: str) -> dict[str, Any]:
    response = client.get(f"{API}/envelopes/{envelope_id}/proof", headers=headers)
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    return bundle


def _cli(tmp_path: Path, bundle: dict[str, Any], pem: bytes, capsys: Any) -> tuple[int, str]:
    (tmp_path / "vault.pem").write_bytes(pem)
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    code = main(["log", "verify", str(tmp_path / "bundle.json"), "--public-key", str(tmp_path / "vault.pem")])
    return code, capsys.readouterr().out


def _refused(bundle: dict[str, Any], pem: bytes) -> str:
    with pytest.raises(LogError) as caught:
        verify_bundle(json.dumps(bundle), pem)
    return caught.value.code


def _types(bundle: dict[str, Any]) -> list[str]:
    return [json.loads(base64.b64decode(e["entry"]))["type"] for e in bundle["events"]]


def test_the_receivers_bundle_proves_the_whole_history_and_the_transferors_its_part(
    client: Any, runtime: Runtime, parties: tuple[Party, Party, Party], tmp_path: Path, capsys: Any
) -> None:
    (a, ah), (b, bh), (_, ch) = parties
    pem = _pem(client)
    envelope_id = _vaulted(client, ah)
    _transfer(client, ah, bh, envelope_id, b)
    # After the acceptance B acts: its retrieval is an event of B's log.
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/signed-url", headers=bh).status_code == 200

    whole = _bundle(client, bh, envelope_id)
    assert whole["format"] == "evault-proof-bundle/v3" and whole["origin"].endswith("/" + b)
    assert [s["log"].rsplit("/", 1)[-1] for s in whole["segments"]] == [a, b]
    assert _types(whole)[-3:] == ["transfer.completed", "transfer.arrived", "vault.retrieval_issued"]
    proven = verify_bundle(json.dumps(whole), pem)
    assert proven.handed_to is None and proven.completeness is not None
    assert proven.completeness.head_seq == len(whole["events"]) - 1
    assert [(s.handed_to, s.last_seq) for s in proven.segments] == [
        (b, len(whole["events"]) - 3),
        (None, len(whole["events"]) - 1),
    ]
    code, out = _cli(tmp_path, whole, pem, capsys)
    assert code == 0 and "complete: event" in out and "across 2 segments" in out, out
    assert [e["type"] for e in outside_verifier.verify_bundle(whole, pem)] == _types(whole)

    # A no longer holds the record, but its log proves its part: up to and including the hand-off.
    part = _bundle(client, ah, envelope_id)
    assert part["format"] == "evault-proof-bundle/v3" and part["origin"].endswith("/" + a)
    assert _types(part)[-1] == "transfer.completed" and len(part["events"]) == len(whole["events"]) - 2
    assert verify_bundle(json.dumps(part), pem).handed_to == b
    code, out = _cli(tmp_path, part, pem, capsys)
    assert code == 0 and f"complete up to the hand-off: event {len(part['events']) - 1}" in out, out
    assert client.get(f"{API}/envelopes/{envelope_id}/proof", headers=ch).status_code == 404  # a bystander

    # Forgeries, each refused by name.
    tampered = copy.deepcopy(whole)
    arrival = next(e for e in tampered["events"] if e["log"].endswith("/" + b))
    value = json.loads(base64.b64decode(arrival["entry"]))
    value["data"]["leaf_index"] += 1
    arrival["entry"] = base64.b64encode(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).decode()
    assert _refused(tampered, pem) == "Log.InvalidProof"
    no_log = copy.deepcopy(whole)
    no_log["logs"] = [item for item in no_log["logs"] if item["origin"].endswith("/" + b)]
    assert _refused(no_log, pem) == "Log.SegmentMissing"
    cut = copy.deepcopy(whole)  # B's segment left out, B still named as where it ends
    cut["events"] = [e for e in cut["events"] if e["log"].endswith("/" + a)]
    cut["segments"] = cut["segments"][:1]
    assert _refused(cut, pem) == "Log.SegmentMissing"
    gap = copy.deepcopy(whole)  # the arrival alone left out: the chain skips a seq
    gap["events"] = [e for e in gap["events"] if e is not gap["events"][-2]]
    assert _refused(gap, pem) == "Chain.Broken"
    # A downgrade to v2 of A's part would claim the hand-off as the complete history.
    v2 = {k: part[k] for k in ("origin", "envelope_id", "checkpoint", "key", "timestamp_token")}
    v2 |= {"format": "evault-proof-bundle/v2", "events": [{k: e[k] for k in e if k != "log"} for e in part["events"]]}
    v2["map"] = part["segments"][-1]["map"]
    assert _refused(v2, pem) == "Log.SegmentMissing"
    with pytest.raises(outside_verifier.Rejected):
        outside_verifier.verify_bundle(cut, pem)

    result = verify(runtime.sources(), options=Options(concurrency=2, record=False))
    assert result.clean, result.findings


def test_a_round_trip_proves_three_segments_and_an_edited_controller_is_reported(
    client: Any, runtime: Runtime, parties: tuple[Party, Party, Party], tmp_path: Path, capsys: Any
) -> None:
    (a, ah), (b, bh), (c, _) = parties
    pem = _pem(client)
    envelope_id = _vaulted(client, ah)
    _transfer(client, ah, bh, envelope_id, b)
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/signed-url", headers=bh).status_code == 200
    _transfer(client, bh, ah, envelope_id, a)
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/signed-url", headers=ah).status_code == 200

    bundle = _bundle(client, ah, envelope_id)
    assert [s["log"].rsplit("/", 1)[-1] for s in bundle["segments"]] == [a, b, a]
    assert len(bundle["logs"]) == 2
    proven = verify_bundle(json.dumps(bundle), pem)
    assert [s.handed_to for s in proven.segments] == [b, a, None]
    code, out = _cli(tmp_path, bundle, pem, capsys)
    assert code == 0 and "across 3 segments" in out, out
    assert len(outside_verifier.verify_bundle(bundle, pem)) == len(bundle["events"])
    middle = _bundle(client, bh, envelope_id)  # B's part: A's segment and its own, up to its hand-off back
    assert [s["log"].rsplit("/", 1)[-1] for s in middle["segments"]] == [a, b]
    assert verify_bundle(json.dumps(middle), pem).handed_to == a
    check = client.get(f"{API}/envelopes/{envelope_id}/compliance?checkpoint=now", headers=ah).json()
    assert check["verdict"] == "pass", check

    result = verify(runtime.sources(), options=Options(concurrency=2, record=False))
    assert result.clean, result.findings
    with runtime.db.session() as session:
        envelope = session.exec(select(Envelope).where(Envelope.id == envelope_id)).one()
        envelope.controller_org_id = c
        session.add(envelope)
    result = verify(runtime.sources(), options=Options(concurrency=2, record=False))
    found = [f for f in result.findings if f.code == "Control.Unsupported"]
    assert found and found[0].details["envelope_id"] == envelope_id, result.findings


def test_the_verifier_names_a_chain_that_goes_on_in_the_log_it_was_handed_out_of(
    client: Any, runtime: Runtime, parties: tuple[Party, Party, Party]
) -> None:
    (a, ah), (b, bh), _ = parties
    envelope_id = _vaulted(client, ah)
    _transfer(client, ah, bh, envelope_id, b)
    with runtime.db.session() as session:  # a fault that writes the next link into A's log after the hand-off
        append_event(
            session,
            actor=Actor(a, source="fault"),
            event_type=ENVELOPE_EXPIRED,
            occurred_at=utcnow(),
            data={"expires_at": None},
            envelope_id=envelope_id,
            log=a,
        )
    result = verify(runtime.sources(), options=Options(concurrency=2, record=False))
    broken = [f for f in result.findings if f.code == "Chain.Broken" and f.details.get("envelope_id") == envelope_id]
    assert {f.details["org_id"] for f in broken} == {a}, result.findings  # the log pass and the row pass name A
    assert any("crosses logs" in f.message for f in broken), broken
    assert any("after its hand-off" in f.message for f in broken), broken


def test_the_receivers_evidence_package_carries_the_whole_history_and_verifies_offline(
    client: Any, parties: tuple[Party, Party, Party]
) -> None:
    """The court-ready zip of a record that changed hands holds the v3 bundle, and its offline check accepts it."""
    (_, ah), (b, bh), _ = parties
    pem = _pem(client)
    envelope_id = _vaulted(client, ah)
    _transfer(client, ah, bh, envelope_id, b)
    response = client.get(f"{API}/envelopes/{envelope_id}/evidence", headers=bh)
    assert response.status_code == 200, response.text
    checked = verify_package(response.content, pem)
    assert checked.manifest["envelope_id"] == envelope_id
    assert [e["type"] for e in checked.bundle.events][-2:] == [
        "transfer.completed",
        "transfer.arrived",
    ]
    assert any(r.kind == "transfer" for r in checked.receipts.values())
