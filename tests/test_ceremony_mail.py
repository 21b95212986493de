"""Links and reminders by email through a real local SMTP server (aiosmtpd), and remind's own rules: it names
exactly the signers whose turn it is, is rate-limited per envelope except right after send, and works (as do send
and the links) without any SMTP server, or with one that is down."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from compliance.ledger.events import envelope_events
from storage.ids import utcnow
from storage.models import Ceremony, MailMessage
from tests.ceremony_helpers import SIGNERS, Mailbox, consent_and_sign, links, sent_envelope, smtp_server
from tests.helpers import API
from tests.ports import aux_port
from vault.ceremony.mail import deliver_due
from vault.runtime import Runtime

pytestmark = pytest.mark.s3

ADA, BOB, VERA = SIGNERS[0]["email"], SIGNERS[1]["email"], "vera@example.com"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    with smtp_server() as served:
        yield served


@pytest.fixture
def vault_env(vault_env: dict[str, str], mailbox: tuple[Mailbox, int]) -> dict[str, str]:
    return {
        **vault_env,
        "EVAULT_SMTP_URL": f"smtp://127.0.0.1:{mailbox[1]}",
        "EVAULT_SMTP_FROM": "vault@lender.example",
        "EVAULT_PUBLIC_URL": "https://vault.lender.example",
    }


def _remind(client: Any, headers: dict[str, str], envelope_id: str) -> Any:
    return client.post(f"{API}/envelopes/{envelope_id}/remind", headers=headers)


def test_links_reach_each_signer_in_turn_by_email(
    client: Any, runtime: Runtime, tenant: Any, mailbox: tuple[Mailbox, int]
) -> None:
    box, _ = mailbox
    _, headers = tenant
    envelope_id = sent_envelope(client, headers)
    assert deliver_due(runtime.ceremonies()) == 2  # Ada (first turn) and Vera (a viewer); Bob waits his turn
    paths = links(client, headers, envelope_id)
    (ada_mail,) = box.to(ADA)
    assert f"https://vault.lender.example{paths[ADA]}" in ada_mail and "From: vault@lender.example" in ada_mail
    assert len(box.to(VERA)) == 1 and box.to(BOB) == []
    assert consent_and_sign(client, paths[ADA], "Ada").status_code == 200
    assert deliver_due(runtime.ceremonies()) == 1
    (bob_mail,) = box.to(BOB)
    assert f"https://vault.lender.example{paths[BOB]}" in bob_mail

    reminded = _remind(client, headers, envelope_id)
    assert reminded.status_code == 200, reminded.text
    assert reminded.json()["reminded"] == [BOB]  # exactly those whose turn it is, nobody else
    assert deliver_due(runtime.ceremonies()) == 1
    assert len(box.to(BOB)) == 2 and "Reminder" in box.to(BOB)[1] and len(box.to(ADA)) == 1


def test_remind_is_rate_limited_but_never_right_after_send(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = sent_envelope(client, headers)
    first = _remind(client, headers, envelope_id)
    assert first.status_code == 200 and first.json()["reminded"] == [ADA]
    again = _remind(client, headers, envelope_id)
    assert (again.status_code, again.json()["code"]) == (429, "Ceremony.RemindTooSoon")
    assert int(again.headers["Retry-After"]) > 0
    with runtime.db.read_session() as session:
        types = [e.event_type for e in envelope_events(session, envelope_id)]
    assert types.count("envelope.reminded") == 1
    with runtime.db.session() as session:
        session.execute(
            update(Ceremony)
            .where(col(Ceremony.envelope_id) == envelope_id)
            .values(reminded_at=utcnow() - timedelta(hours=2))
        )
    assert _remind(client, headers, envelope_id).status_code == 200
    draft = client.post(
        f"{API}/envelopes", json={"kind": "esign", "title": "x", "recipients": [SIGNERS[0]]}, headers=headers
    ).json()["id"]
    refused = _remind(client, headers, draft)
    assert (refused.status_code, refused.json()["code"]) == (409, "Envelope.InvalidTransition")


def test_a_down_smtp_server_fails_no_request_and_loses_no_email(
    client: Any, runtime: Runtime, tenant: Any, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    _, headers = tenant
    ceremonies = runtime.ceremonies()
    dead_port = aux_port("closed")  # nothing listens there
    assert dead_port != port
    down = replace(ceremonies, settings=replace(ceremonies.settings, smtp_url=f"smtp://127.0.0.1:{dead_port}"))
    envelope_id = sent_envelope(client, headers)
    assert deliver_due(down) == 0
    with runtime.db.read_session() as session:
        rows = list(session.exec(select(MailMessage).where(MailMessage.envelope_id == envelope_id)))
    assert {(r.status, r.attempts) for r in rows} == {("pending", 1)} and all(r.last_error for r in rows)
    with runtime.db.session() as session:  # the back-off has passed; the server is back
        session.execute(update(MailMessage).values(next_attempt_at=utcnow()))
    assert deliver_due(runtime.ceremonies()) == 2 and len(box.to(ADA)) == 1
