"""The e-sign ceremony over HTTP on the real stack (SeaweedFS; SQLite and PostgreSQL): create with a roster, stage
the document, send, sign in order through each recipient's link, and the sealed PDF vaulted by itself; decline,
void and expiry mid-ceremony, out-of-turn and reused links, forged and expired tokens, another organisation's
envelope, and a crash between the seal and the vault-in finished by the reconciler."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import update
from sqlmodel import col, select

from compliance.errors import InvalidInput
from compliance.ledger.events import envelope_events
from storage.ids import iso, utcnow
from storage.models import (
    Ceremony,
    Envelope,
    MailMessage,
    Recipient,
    VaultedDocument,
    VaultRecord,
    WebhookDelivery,
)
from storage.object_store import ObjectStore
from tests.ceremony_helpers import (
    SIGNERS,
    check_seal,
    consent_and_sign,
    create_esign,
    fields,
    links,
    png_data_url,
    roster,
    sent_envelope,
    sign,
    upload_document,
)
from tests.helpers import API, sleep_past, together, upload
from tests.pdf_factory import make_pdf
from vault.ceremony.completion import reconcile_ceremonies
from vault.ceremony.drawn import decode
from vault.erasure import erase_subject, subjects_by_email
from vault.runtime import Runtime

pytestmark = pytest.mark.s3

ADA, BOB = SIGNERS[0]["email"], SIGNERS[1]["email"]


def _events(runtime: Runtime, envelope_id: str) -> list[dict[str, Any]]:
    with runtime.db.read_session() as session:
        return [json.loads(e.entry) for e in envelope_events(session, envelope_id)]


def _types(runtime: Runtime, envelope_id: str) -> list[str]:
    return [e["type"] for e in _events(runtime, envelope_id)]


def _envelope(client: Any, headers: dict[str, str], envelope_id: str) -> dict[str, Any]:
    response = client.get(f"{API}/envelopes/{envelope_id}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _sealed(runtime: Runtime, envelope_id: str) -> bytes:
    with runtime.db.read_session() as session:
        record = session.exec(select(VaultRecord).where(VaultRecord.envelope_id == envelope_id)).one()
        (doc,) = session.exec(select(VaultedDocument).where(VaultedDocument.record_id == record.id)).all()
    return runtime.authoritative.read(doc.s3_key, doc.s3_version_id)


def test_two_signers_in_order_end_in_a_sealed_vaulted_pdf(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_esign(client, headers, roster())
    view = _envelope(client, headers, envelope_id)
    assert view["status"] == "draft"
    assert [(r["email"], r["order"], r["status"], r["role"]) for r in view["recipients"]] == [
        (ADA, 1, "pending", "signer"),
        ("vera@example.com", 1, "pending", "viewer"),
        (BOB, 2, "pending", "signer"),
    ]
    assert all(r["id"].startswith("rcp_") for r in view["recipients"])
    # Links exist once sent, not before.
    assert client.get(f"{API}/envelopes/{envelope_id}/signing-links", headers=headers).status_code == 409
    assert client.post(f"{API}/envelopes/{envelope_id}/send", headers=headers).json()["code"] == "Ceremony.NoDocument"
    assert upload_document(client, headers, envelope_id).status_code == 201
    sent = client.post(f"{API}/envelopes/{envelope_id}/send", headers=headers)
    assert sent.status_code == 200, sent.text
    assert sent.json()["status"] == "sent" and sent.json()["document"]["pages"] == 2

    answer = client.get(f"{API}/envelopes/{envelope_id}/signing-links", headers=headers).json()["links"]
    assert {link["email"] for link in answer} == {ADA, BOB, "vera@example.com"}
    for link in answer:
        assert set(link) == {"recipient_id", "email", "role", "order", "status", "url", "expires_at"}
        token = link["url"].rsplit("/sign/", 1)[1]
        assert "?" not in link["url"] and "#" not in link["url"] and len(token.split(".")[1]) >= 22
    assert links(client, headers, envelope_id) == links(client, headers, envelope_id)  # served again, the same
    paths = links(client, headers, envelope_id)

    # Bob's turn has not come: consent is fine, signing is refused and changes nothing.
    assert client.post(f"{paths[BOB]}/consent").status_code == 200
    before = _types(runtime, envelope_id)
    refused = sign(client, paths[BOB], "Bob Cosigner")
    assert (refused.status_code, refused.json()["code"]) == (409, "Signing.NotYourTurn")
    assert _types(runtime, envelope_id) == before

    # Ada: no document before consent, then consent, read, sign.
    assert client.get(f"{paths[ADA]}/state").json()["your_turn"] is True
    assert client.get(f"{paths[ADA]}/document").json()["code"] == "Signing.ConsentRequired"
    assert sign(client, paths[ADA], "Ada B.").json()["code"] == "Signing.ConsentRequired"
    for _ in range(2):  # repeatable
        assert client.post(f"{paths[ADA]}/consent").status_code == 200
        document = client.get(f"{paths[ADA]}/document")
        assert document.status_code == 200 and document.content.startswith(b"%PDF-")
    assert sign(client, paths[ADA], "Ada B. Borrower").status_code == 200
    reused = sign(client, paths[ADA], "Ada B. Borrower")
    assert (reused.status_code, reused.json()["code"]) == (409, "Signing.LinkUsed")
    assert client.get(f"{paths[ADA]}/state").status_code == 409

    drawn, _ = png_data_url()
    done = client.post(
        f"{paths[BOB]}/sign", json={"signature": {"type": "drawn", "name": "Bob C. Cosigner", "image": drawn}}
    )
    assert done.status_code == 200, done.text
    assert done.json()["envelope_status"] == "completed"
    view = _envelope(client, headers, envelope_id)
    assert (view["status"], view["vault"]["state"], view["vault"]["source"]) == ("completed", "vaulted", "signed")
    assert [r["status"] for r in view["recipients"]] == ["signed", "pending", "signed"]

    sealed = _sealed(runtime, envelope_id)
    assert runtime.document_signer is not None
    seal = check_seal(sealed, runtime.document_signer.asn1()[0])
    assert (seal.intact, seal.valid, seal.trusted, seal.whole_file, seal.docmdp_ok, seal.certify) == (True,) * 6
    assert seal.signatures == 1
    assert len(PdfReader(io.BytesIO(sealed)).pages[1].images) == 1  # Bob's drawn signature, in his field
    for text in ("Signing certificate", "Ada Borrower", "Ada B. Borrower", "Bob Cosigner", "Bob C. Cosigner", "sub_"):
        assert text in seal.last_page_text
    (document,) = view["vault"]["documents"]
    assert document["signatures"]["acceptable"] is True
    with runtime.db.read_session() as session:
        ceremony = session.get(Ceremony, envelope_id)
    assert ceremony is not None and ceremony.s3_key and ceremony.sealed_key
    staging = runtime.custody().staging_store  # the vault holds the sealed PDF: the staged ones are gone
    assert staging.list_versions(ceremony.s3_key) == [] and staging.list_versions(ceremony.sealed_key) == []

    types = _types(runtime, envelope_id)
    for expected in (
        "envelope.created",
        "envelope.sent",
        "recipient.viewed",
        "recipient.consented",
        "recipient.signed",
        "envelope.completed",
        "vault.vaulted_in",
    ):
        assert expected in types
    assert types.count("recipient.signed") == 2 and types.count("vault.vaulted_in") == 1
    assert types.index("envelope.completed") < types.index("vault.vaulted_in")
    with runtime.db.read_session() as session:
        entries = b"".join(e.entry for e in envelope_events(session, envelope_id))
    for personal in (b"ada@example.com", b"Ada Borrower", b"Bob C. Cosigner", b"testclient"):
        assert personal not in entries  # names, emails, addresses: commitments only

    compliance = client.get(f"{API}/envelopes/{envelope_id}/compliance?checkpoint=now", headers=headers)
    assert compliance.status_code == 200, compliance.text
    assert compliance.json()["verdict"] == "pass", compliance.json()
    audit = client.get(f"{API}/envelopes/{envelope_id}/audit", headers=headers)
    shown = json.dumps(audit.json()["personal_data"])  # the people behind the commitments, for the authorised
    assert "ada@example.com" in shown and "Bob C. Cosigner" in shown and "testclient" in shown


@pytest.mark.parametrize("colour_type", [0, 2, 4, 6])
def test_drawn_signatures_decode_every_png_filter(colour_type: int) -> None:
    url, pixels = png_data_url(colour_type=colour_type)
    picture = decode(url)
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    colour = channels - (1 if colour_type in (4, 6) else 0)
    assert (picture.width, picture.height, picture.grey) == (60, 20, colour == 1)
    assert picture.colour == b"".join(pixels[i : i + colour] for i in range(0, len(pixels), channels))
    assert picture.alpha == (pixels[channels - 1 :: channels] if colour < channels else None)
    for bad in ("data:image/gif;base64,R0lG", url[:-8], "data:image/png;base64,iVBORw0KGgo=", 7):
        with pytest.raises(InvalidInput) as refused:
            decode(bad)
        assert refused.value.code == "Signing.InvalidSignature"


def test_fields_must_fall_on_a_page_of_the_document(client: Any, tenant: Any) -> None:
    _, headers = tenant
    off_page = [{**SIGNERS[0], "fields": fields(3)}]
    envelope_id = create_esign(client, headers, off_page)
    refused = upload_document(client, headers, envelope_id)
    assert (refused.status_code, refused.json()["code"]) == (400, "Recipient.FieldOffPage")
    assert _envelope(client, headers, envelope_id)["document"] is None
    wide = [{**SIGNERS[0], "fields": [{"type": "signature", "page": 1, "x": 600, "y": 10, "width": 100, "height": 20}]}]
    envelope_id = create_esign(client, headers, wide)
    assert upload_document(client, headers, envelope_id).json()["code"] == "Recipient.FieldOffPage"
    bad = client.post(
        f"{API}/envelopes",
        json={"kind": "esign", "title": "x", "recipients": [{**SIGNERS[0], "role": "notary"}]},
        headers=headers,
    )
    assert (bad.status_code, bad.json()["code"], bad.json()["details"]["field"]) == (
        400,
        "Recipient.Invalid",
        "recipients[0].role",
    )
    paper = client.post(
        f"{API}/envelopes", json={"kind": "paper", "title": "x", "recipients": [SIGNERS[0]]}, headers=headers
    )
    assert paper.json()["code"] == "Recipient.Invalid"
    viewers_only = create_esign(client, headers, [{**SIGNERS[0], "role": "viewer"}])
    assert upload_document(client, headers, viewers_only).status_code == 201
    refused = client.post(f"{API}/envelopes/{viewers_only}/send", headers=headers)
    assert (refused.status_code, refused.json()["code"]) == (409, "Ceremony.NoSigner")


def test_vault_in_signed_waits_for_the_ceremony(client: Any, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = sent_envelope(client, headers)
    refused = upload(client, headers, envelope_id, make_pdf(), flow="signed")
    assert (refused.status_code, refused.json()["code"]) == (409, "Ceremony.InProgress")


def test_decline_ends_the_ceremony_for_good(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = sent_envelope(client, headers)
    paths = links(client, headers, envelope_id)
    assert client.post(f"{paths[BOB]}/decline", json={"reason": " "}).status_code == 400
    declined = client.post(f"{paths[BOB]}/decline", json={"reason": "the rate is wrong"})
    assert declined.status_code == 200, declined.text
    assert _envelope(client, headers, envelope_id)["status"] == "declined"
    before = _types(runtime, envelope_id)
    closed = consent_and_sign_refused(client, paths[ADA])
    assert (closed.status_code, closed.json()["code"]) == (410, "Signing.EnvelopeClosed")
    again = client.post(f"{paths[BOB]}/decline", json={"reason": "again"})
    assert (again.status_code, again.json()["code"]) == (409, "Signing.LinkUsed")
    assert _types(runtime, envelope_id) == before and before[-1] == "recipient.declined"
    refused = upload(client, headers, envelope_id, make_pdf(), flow="signed")
    assert (refused.status_code, refused.json()["code"]) == (409, "Envelope.NotVaultable")


def consent_and_sign_refused(client: Any, link: str) -> Any:
    assert client.get(f"{link}/state").status_code == 410
    assert client.post(f"{link}/consent").status_code == 410
    return sign(client, link, "Ada")


def test_void_mid_ceremony_kills_every_link(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = sent_envelope(client, headers)
    paths = links(client, headers, envelope_id)
    assert consent_and_sign(client, paths[ADA], "Ada").status_code == 200
    voided = client.post(f"{API}/envelopes/{envelope_id}/void", json={"reason": "withdrawn"}, headers=headers)
    assert voided.status_code == 200 and voided.json()["status"] == "voided"
    assert client.post(f"{paths[BOB]}/consent").json()["code"] == "Signing.EnvelopeClosed"
    refused = sign(client, paths[BOB], "Bob")
    assert (refused.status_code, refused.json()["code"]) == (410, "Signing.EnvelopeClosed")
    assert _types(runtime, envelope_id)[-1] == "envelope.voided"
    assert [r["status"] for r in _envelope(client, headers, envelope_id)["recipients"]][2] == "pending"


def test_expiry_mid_ceremony_kills_the_links_on_time(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    deadline = utcnow() + timedelta(seconds=4)
    envelope_id = sent_envelope(client, headers, expires_at=iso(deadline))
    paths = links(client, headers, envelope_id)
    answer = client.get(f"{API}/envelopes/{envelope_id}/signing-links", headers=headers).json()["links"]
    assert {link["expires_at"] for link in answer} == {iso(deadline)}
    assert consent_and_sign(client, paths[ADA], "Ada").status_code == 200
    assert client.post(f"{paths[BOB]}/consent").status_code == 200
    sleep_past(deadline, 0.5)
    refused = sign(client, paths[BOB], "Bob")
    assert (refused.status_code, refused.json()["code"]) == (410, "Signing.EnvelopeClosed")
    assert refused.json()["details"]["status"] == "expired"
    assert _envelope(client, headers, envelope_id)["status"] == "expired"
    assert _types(runtime, envelope_id)[-1] == "envelope.expired"


def test_forged_expired_and_foreign_tokens(client: Any, runtime: Runtime, tenant: Any, make_key: Any) -> None:
    _, headers = tenant
    envelope_id = sent_envelope(client, headers)
    path = links(client, headers, envelope_id)[ADA]
    recipient_id, mac = path.rsplit("/", 1)[1].split(".")
    forged = f"/sign/{recipient_id}.{('A' if mac[0] != 'A' else 'B')}{mac[1:]}"
    for bad in (forged, "/sign/nonsense", f"/sign/{recipient_id}", "/sign/rcp_aaaaaaaaaaaaaaaaaaaa." + mac):
        answer = client.post(f"{bad}/consent")
        assert (answer.status_code, answer.json()["code"]) == (404, "Signing.LinkNotFound"), bad
    # Another organisation cannot read this envelope's links, nor use its own key's envelope id to reach them.
    _, other = make_key()
    foreign = client.get(f"{API}/envelopes/{envelope_id}/signing-links", headers={"X-API-Key": other})
    assert (foreign.status_code, foreign.json()["code"]) == (404, "Envelope.NotFound")
    theirs = sent_envelope(client, {"X-API-Key": other})
    their_path = links(client, {"X-API-Key": other}, theirs)[ADA]
    crossed = f"/sign/{their_path.rsplit('/', 1)[1].split('.')[0]}.{mac}"  # their recipient, our MAC
    assert client.post(f"{crossed}/consent").json()["code"] == "Signing.LinkNotFound"
    # A link whose time ran out.
    with runtime.db.session() as session:
        session.execute(
            update(Ceremony)
            .where(col(Ceremony.envelope_id) == envelope_id)
            .values(sent_at=utcnow() - timedelta(seconds=runtime.settings.ceremony.link_ttl_seconds + 1))
        )
    expired = client.post(f"{path}/consent")
    assert (expired.status_code, expired.json()["code"]) == (410, "Signing.LinkExpired")
    with runtime.db.read_session() as session:
        ada = session.exec(select(Recipient).where(Recipient.envelope_id == envelope_id)).first()
        assert ada is not None and ada.consented_at is None


def test_a_crash_between_seal_and_vault_in_is_finished_once(
    client: Any, runtime: Runtime, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, headers = tenant
    envelope_id = sent_envelope(client, headers)
    paths = links(client, headers, envelope_id)
    assert consent_and_sign(client, paths[ADA], "Ada").status_code == 200
    real_put = ObjectStore.put_write_once_file
    failures: list[str] = []

    def fail_once(self: ObjectStore, key: str, *args: Any, **kwargs: Any) -> Any:
        if self.bucket == runtime.authoritative.bucket and not failures:
            failures.append(key)
            raise OSError("the vault-in put dies")
        return real_put(self, key, *args, **kwargs)

    monkeypatch.setattr(ObjectStore, "put_write_once_file", fail_once)
    done = consent_and_sign(client, paths[BOB], "Bob")
    assert done.status_code == 200 and done.json()["envelope_status"] == "completed"
    assert failures  # the put was tried, and failed
    view = _envelope(client, headers, envelope_id)
    assert (view["status"], view["vault"]["state"]) == ("completed", "not_vaulted")
    with runtime.db.read_session() as session:
        ceremony = session.get(Ceremony, envelope_id)
        assert ceremony is not None and ceremony.sealed_sha256 is not None
        sealed_sha256 = ceremony.sealed_sha256

    assert reconcile_ceremonies(runtime.ceremonies()) == [envelope_id]
    assert reconcile_ceremonies(runtime.ceremonies()) == []
    view = _envelope(client, headers, envelope_id)
    assert (view["status"], view["vault"]["state"]) == ("completed", "vaulted")
    assert [d["sha256"] for d in view["vault"]["documents"]] == [sealed_sha256]  # the seal made before the crash
    assert _types(runtime, envelope_id).count("vault.vaulted_in") == 1
    with runtime.db.read_session() as session:
        envelope = session.get(Envelope, envelope_id)
        assert envelope is not None and envelope.status == "completed"


def test_without_smtp_send_and_remind_still_work_and_queue_nothing(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = sent_envelope(client, headers)
    reminded = client.post(f"{API}/envelopes/{envelope_id}/remind", headers=headers)
    assert reminded.status_code == 200 and reminded.json()["reminded"] == [ADA]
    assert _types(runtime, envelope_id)[-2:] == ["envelope.sent", "envelope.reminded"]
    with runtime.db.read_session() as session:
        assert session.exec(select(MailMessage)).all() == []


def test_one_link_signed_twice_at_once_signs_once(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = sent_envelope(client, headers)
    paths = links(client, headers, envelope_id)
    assert client.post(f"{paths[ADA]}/consent").status_code == 200
    a, b = together(lambda: sign(client, paths[ADA], "Ada"), lambda: sign(client, paths[ADA], "Ada"))
    assert sorted([a.status_code, b.status_code]) == [200, 409], (a.text, b.text)
    assert (a if a.status_code == 409 else b).json()["code"] == "Signing.LinkUsed"
    assert _types(runtime, envelope_id).count("recipient.signed") == 1


def test_the_last_two_signers_at_once_complete_and_vault_once(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    same_turn = [{**SIGNERS[0], "fields": fields(1)}, {**SIGNERS[1], "order": 1, "fields": fields(2)}]
    envelope_id = sent_envelope(client, headers, same_turn)
    paths = links(client, headers, envelope_id)
    for email in (ADA, BOB):
        assert client.post(f"{paths[email]}/consent").status_code == 200
    a, b = together(lambda: sign(client, paths[ADA], "Ada"), lambda: sign(client, paths[BOB], "Bob"))
    assert (a.status_code, b.status_code) == (200, 200), (a.text, b.text)
    assert sorted([a.json()["envelope_status"], b.json()["envelope_status"]]) == ["completed", "sent"]
    types = _types(runtime, envelope_id)
    assert (types.count("envelope.completed"), types.count("vault.vaulted_in")) == (1, 1)
    assert _envelope(client, headers, envelope_id)["vault"]["state"] == "vaulted"


def test_ceremony_events_reach_the_webhook_outbox(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    configured = client.patch(f"{API}/webhook", json={"url": "https://93.184.215.14/hooks"}, headers=headers)
    assert configured.status_code == 200, configured.text
    envelope_id = sent_envelope(client, headers, [{**SIGNERS[0], "fields": fields(1)}])
    path = links(client, headers, envelope_id)[ADA]
    assert client.post(f"{API}/envelopes/{envelope_id}/remind", headers=headers).status_code == 200
    assert consent_and_sign(client, path, "Ada").status_code == 200
    with runtime.db.read_session() as session:
        rows = session.exec(select(WebhookDelivery).where(WebhookDelivery.envelope_id == envelope_id)).all()
    bodies = {row.event_type: json.loads(row.body) for row in rows}
    for expected in (
        "envelope.sent",
        "envelope.reminded",
        "recipient.viewed",
        "recipient.consented",
        "recipient.signed",
        "envelope.completed",
        "vault.vaulted_in",
    ):
        assert expected in bodies, sorted(bodies)
    assert bodies["recipient.signed"]["data"]["order"] == 1
    assert b"ada@example.com" not in b"".join(row.body.encode() for row in rows)


def test_erasing_a_recipient_by_email_erases_every_step_of_theirs(client: Any, runtime: Runtime, tenant: Any) -> None:
    org_id, headers = tenant
    envelope_id = sent_envelope(client, headers)
    path = links(client, headers, envelope_id)[ADA]
    assert client.get(f"{path}/state").status_code == 200  # viewed and consented: two steps, two subjects
    assert client.post(f"{path}/consent").status_code == 200
    with runtime.db.read_session() as session:
        subjects = subjects_by_email(session, org_id, ADA)
    assert len(subjects) == 3  # the recipient, and what their client showed at each step
    for subject in subjects:
        erase_subject(runtime.db, subject)
    (ada,) = [
        r for r in _envelope(client, headers, envelope_id)["recipients"] if r["order"] == 1 and r["role"] == "signer"
    ]
    assert (ada["name"], ada["email"]) == (None, None)
    with runtime.db.read_session() as session:
        assert subjects_by_email(session, org_id, ADA) == []
