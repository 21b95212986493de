"""Concurrent state changes over HTTP: one winner, one stable 409, one event — on PostgreSQL as on SQLite.

Each race is run several times: two threads meet at a barrier and fire at once. On PostgreSQL the requests
really overlap (row locks decide); on SQLite the single writer serialises them, and the answers must be the
same.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from sqlmodel import col, select

from storage.models import Event, VaultClaim
from tests.helpers import API, create_envelope, together, upload
from tests.pdf_factory import make_pdf
from vault.runtime import Runtime

TRIALS = 4


def _events(runtime: Runtime, envelope_id: str) -> list[str]:
    with runtime.db.read_session() as session:
        rows = session.exec(select(Event).where(Event.envelope_id == envelope_id).order_by(col(Event.chain_seq)))
        return [e.event_type for e in rows]


def _vaulted(client: Any, headers: dict[str, str]) -> str:
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    return envelope_id


def test_concurrent_vault_outs_have_one_winner(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    for _ in range(TRIALS):
        envelope_id = _vaulted(client, headers)

        def release(to: str, envelope_id: str = envelope_id) -> Any:
            body = {"reason": "transfer", "transferee": {"vault_id": to}}
            return client.post(f"{API}/envelopes/{envelope_id}/vault-out", json=body, headers=headers)

        a, b = together(lambda: release("vault-a"), lambda: release("vault-b"))
        assert sorted([a.status_code, b.status_code]) == [200, 409], (a.text, b.text)
        loser = a if a.status_code == 409 else b
        winner = b if loser is a else a
        assert loser.json()["code"] == "Vault.AlreadyReleased"
        assert _events(runtime, envelope_id).count("vault.released") == 1
        shown = client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()["vault"]["released"]
        assert shown["details"] == winner.json()["vault"]["released"]["details"]


def test_vault_out_racing_retrieval_never_serves_after_release(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    for _ in range(TRIALS):
        envelope_id = _vaulted(client, headers)
        out, url = together(
            lambda envelope_id=envelope_id: client.post(
                f"{API}/envelopes/{envelope_id}/vault-out", json={"reason": "payoff"}, headers=headers
            ),
            lambda envelope_id=envelope_id: client.get(
                f"{API}/envelopes/{envelope_id}/vault/signed-url", headers=headers
            ),
        )
        assert out.status_code == 200, out.text
        events = _events(runtime, envelope_id)
        if url.status_code == 200:
            # Served: its issuance is on the record, before the release.
            assert events.index("vault.retrieval_issued") < events.index("vault.released")
        else:
            assert (url.status_code, url.json()["code"]) == (409, "Vault.Released")
            assert "vault.retrieval_issued" not in events
        assert events.count("vault.released") == 1


def test_concurrent_vault_ins_of_other_bytes_leave_one_record_and_only_its_objects(
    client: Any, runtime: Runtime, tenant: Any
) -> None:
    org_id, headers = tenant
    for _ in range(TRIALS):
        envelope_id = create_envelope(client, headers)
        first, second = make_pdf(text="first"), make_pdf(text="second")
        a, b = together(
            partial(upload, client, headers, envelope_id, first),
            partial(upload, client, headers, envelope_id, second),
        )
        assert sorted([a.status_code, b.status_code]) == [201, 409], (a.text, b.text)
        loser = a if a.status_code == 409 else b
        assert loser.json()["code"] in {"Vault.InProgress", "Vault.AlreadyVaulted"}
        winner = (b if loser is a else a).json()["vault"]["documents"][0]
        prefix = f"authoritative/{org_id}/{envelope_id}/"
        listed = runtime.s3_client.list_object_versions(Bucket=runtime.authoritative.bucket, Prefix=prefix)
        assert [v["VersionId"] for v in listed.get("Versions", [])] == [winner["version_id"]]
        assert _events(runtime, envelope_id).count("vault.vaulted_in") == 1
    with runtime.db.read_session() as session:
        assert session.exec(select(VaultClaim)).all() == []


def test_concurrent_vault_ins_of_the_same_bytes_are_one_vault_in_and_a_replay(
    client: Any, runtime: Runtime, tenant: Any
) -> None:
    _, headers = tenant
    for _ in range(TRIALS):
        envelope_id = create_envelope(client, headers)
        pdf = make_pdf(text="same")
        a, b = together(
            partial(upload, client, headers, envelope_id, pdf), partial(upload, client, headers, envelope_id, pdf)
        )
        codes = sorted([a.status_code, b.status_code])
        # The second either replays the finished vault-in (200) or met the first one's claim mid-flight (409).
        assert codes in ([200, 201], [201, 409]), (a.text, b.text)
        assert _events(runtime, envelope_id).count("vault.vaulted_in") == 1


def test_vault_in_racing_vault_out_keeps_the_chain_in_order(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    for _ in range(TRIALS):
        envelope_id = create_envelope(client, headers)
        vin, out = together(
            partial(upload, client, headers, envelope_id, make_pdf()),
            partial(
                client.post, f"{API}/envelopes/{envelope_id}/vault-out", json={"reason": "payoff"}, headers=headers
            ),
        )
        assert vin.status_code == 201, vin.text
        events = _events(runtime, envelope_id)
        if out.status_code == 200:
            assert events.index("vault.vaulted_in") < events.index("vault.released")
        else:
            assert (out.status_code, out.json()["code"]) == (409, "Vault.NotVaulted")
            assert "vault.released" not in events
        state = client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()["vault"]["state"]
        assert state == ("released" if out.status_code == 200 else "vaulted")
