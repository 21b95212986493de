"""What a signing link may do: look, consent, read the document, sign in turn, decline.

The token is the only credential (:mod:`vault.ceremony.tokens`). Every step locks the envelope, then checks, in
this order, that the link is genuine (404 ``Signing.LinkNotFound`` otherwise, also for another organisation's
recipient: a link names its recipient and nothing else), that its recipient has not signed or declined (409
``Signing.LinkUsed``), that the ceremony is still open (410 ``Signing.EnvelopeClosed``: voided, declined,
expired, completed), that its document is staged (410 ``Ceremony.DocumentMissing``, only after a rebuild that
found none) and that the link has not expired (410 ``Signing.LinkExpired``). A refused step changes
nothing. Each first view, consent, signature and decline is a ledger event; the person and their client (address,
user agent, adopted name) reach it only as commitments (a data subject per step, erasable).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from compliance.errors import Conflict, Gone, InvalidInput, NotFound
from compliance.ledger.event_catalogue import (
    ENVELOPE_COMPLETED,
    RECIPIENT_CONSENTED,
    RECIPIENT_DECLINED,
    RECIPIENT_SIGNED,
    RECIPIENT_VIEWED,
)
from compliance.ledger.events import Actor, append_event
from compliance.ledger.personal_data import commit_parties
from storage.ids import iso, utcnow
from storage.models import Ceremony, Envelope, Recipient
from vault.ceremony.context import Ceremonies
from vault.ceremony.disclosure import DISCLOSURE, DISCLOSURE_SHA256
from vault.ceremony.drawn import decode
from vault.ceremony.mail import WAKE, queue_mail
from vault.ceremony.roster import commitments, people, roster
from vault.ceremony.sending import current_turn
from vault.ceremony.tokens import token_matches, token_recipient_id
from vault.embed import embed_recipient_id, embed_token_end, is_embed_token
from vault.envelopes import lock_envelope
from vault.expiry import expire_locked
from vault.field_limits import check_line
from vault.lifecycle import transition

SIGNATURE_TYPES = ("typed", "drawn")
MAX_REASON = 500
SOURCE = "signing-link"  # the component that acts for a recipient (never a key)


@dataclass(frozen=True)
class Client:
    """What the recipient's client showed: kept in a data subject, committed to in the log."""

    ip: str | None
    user_agent: str | None

    def values(self, **extra: Any) -> dict[str, Any]:
        return {"ip": self.ip, "user_agent": (self.user_agent or "")[:300], **extra}


@dataclass
class Link:
    recipient: Recipient
    envelope: Envelope
    ceremony: Ceremony


def _not_found() -> NotFound:
    return NotFound("Signing.LinkNotFound", "no such signing link")


def open_link(session: Session, ceremonies: Ceremonies, token: str, now: datetime) -> Link:
    """The live link the token names, its envelope locked; or the refusal (see the module's order)."""
    recipient_id = token_recipient_id(token) or embed_recipient_id(token)
    recipient = session.get(Recipient, recipient_id) if recipient_id else None
    embedded = is_embed_token(token)
    ends = embed_token_end(ceremonies.link_secret, recipient, token) if recipient and embedded else None
    genuine = ends is not None if embedded else recipient and token_matches(ceremonies.link_secret, recipient, token)
    if recipient is None or not genuine:
        raise _not_found()
    envelope = lock_envelope(session, recipient.org_id, recipient.envelope_id)
    session.refresh(recipient)
    ceremony = session.get(Ceremony, envelope.id)
    if ceremony is None or ceremony.sent_at is None:
        raise _not_found()
    if expire_locked(session, envelope, now):
        session.commit()  # the deadline passed: the expiry is recorded, the step refused
    if recipient.status in ("signed", "declined"):
        raise Conflict(
            "Signing.LinkUsed", f"this link was used: its recipient {recipient.status}", status=recipient.status
        )
    if envelope.status != "sent":
        raise Gone("Signing.EnvelopeClosed", f"the envelope is {envelope.status}", status=envelope.status)
    if ceremony.s3_version_id is None:  # rebuilt without its staged document (docs/rebuild.md): nothing to sign
        raise Gone(
            "Ceremony.DocumentMissing",
            "the document to sign is no longer staged; the sender must void this envelope and send a new one",
        )
    expires = ceremonies.links_expire(envelope, ceremony)
    if ends is not None:  # an embed token (vault.embed): its own end, never past the link's
        expires = min(expires, ends) if expires is not None else ends
    if expires is not None and expires <= now:
        raise Gone("Signing.LinkExpired", "this signing link expired", expired_at=iso(expires))
    return Link(recipient, envelope, ceremony)


def _who(session: Session, link: Link, client: Client, now: datetime, **evidence: Any) -> dict[str, Any]:
    """The event's data about the person: their recipient id, the commitment to them, and a new data subject
    for what their client showed at this step (committed to, never written in clear)."""
    recipient = link.recipient
    # The step's subject names the person's email too, so erasing them by email (``evault erase``) finds it.
    email = people(session, [recipient])[recipient.id].get("email")
    values = client.values(email=email, **evidence)
    proof = commit_parties(session, recipient.org_id, recipient.envelope_id, [values], now)
    who = commitments(session, [recipient])
    return {"recipient_id": recipient.id, "signer": list(who.values()), "evidence": proof}


def _actor(link: Link) -> Actor:
    return Actor(link.recipient.org_id, source=SOURCE)


def state(session: Session, ceremonies: Ceremonies, link: Link) -> dict[str, Any]:
    """What the signing page shows: the recipient, their fields, the pages, the consent, the turn."""
    recipient, envelope, ceremony = link.recipient, link.envelope, link.ceremony
    person = people(session, [recipient])[recipient.id]
    turn = {r.id for r in current_turn(roster(session, envelope.id))}
    expires = ceremonies.links_expire(envelope, ceremony)
    return {
        "envelope": {"id": envelope.id, "title": envelope.title, "status": envelope.status},
        "recipient": {
            "id": recipient.id,
            "name": person.get("name"),
            "email": person.get("email"),
            "role": recipient.role,
            "order": recipient.signing_order,
            "status": recipient.status,
            "fields": recipient.fields,
        },
        "document": {"filename": ceremony.filename, "sha256": ceremony.sha256, "pages": ceremony.pages},
        "consent": {
            "given": recipient.consented_at is not None,
            "at": iso(recipient.consented_at) if recipient.consented_at else None,
            "disclosure": DISCLOSURE,
            "disclosure_sha256": DISCLOSURE_SHA256,
        },
        "your_turn": recipient.id in turn,
        "expires_at": iso(expires) if expires else None,
    }


def view(ceremonies: Ceremonies, token: str, client: Client) -> dict[str, Any]:
    """The link's state; the first look is recorded (``recipient.viewed``), later ones are not."""
    now = utcnow()
    with ceremonies.custody.db.session() as session:
        link = open_link(session, ceremonies, token, now)
        if link.recipient.viewed_at is None:
            link.recipient.viewed_at = now
            link.recipient.status = "viewed" if link.recipient.status == "pending" else link.recipient.status
            session.add(link.recipient)
            append_event(
                session,
                actor=_actor(link),
                envelope_id=link.envelope.id,
                event_type=RECIPIENT_VIEWED,
                occurred_at=now,
                data=_who(session, link, client, now),
            )
        return state(session, ceremonies, link)


def consent(ceremonies: Ceremonies, token: str, client: Client) -> dict[str, Any]:
    """Consent to electronic records and signatures after the disclosures; repeatable, recorded once."""
    now = utcnow()
    with ceremonies.custody.db.session() as session:
        link = open_link(session, ceremonies, token, now)
        recipient = link.recipient
        if recipient.consented_at is None:
            recipient.viewed_at = recipient.viewed_at or now
            recipient.consented_at = now
            recipient.status = "consented"
            session.add(recipient)
            append_event(
                session,
                actor=_actor(link),
                envelope_id=link.envelope.id,
                event_type=RECIPIENT_CONSENTED,
                occurred_at=now,
                data={**_who(session, link, client, now), "disclosure_sha256": DISCLOSURE_SHA256},
            )
        return state(session, ceremonies, link)


def document_location(ceremonies: Ceremonies, token: str) -> tuple[str, str, str, str]:
    """(key, version, sha256, filename) of the document to read: only after consent (E-SIGN 101(c)(1))."""
    now = utcnow()
    with ceremonies.custody.db.session() as session:
        link = open_link(session, ceremonies, token, now)
        if link.recipient.consented_at is None:
            raise Conflict("Signing.ConsentRequired", "consent to electronic records first (POST .../consent)")
        ceremony = link.ceremony
        assert ceremony.s3_key and ceremony.s3_version_id and ceremony.sha256  # open_link checked it is staged
        return ceremony.s3_key, ceremony.s3_version_id, ceremony.sha256, ceremony.filename or "document.pdf"


def _adopted(signature: Any) -> dict[str, Any]:
    """``{"type": "typed", "name"}``, or ``{"type": "drawn", "name", "image": "data:image/png;base64,..."}``
    (the name is printed on the certificate page either way)."""
    if not isinstance(signature, dict) or signature.get("type") not in SIGNATURE_TYPES:
        raise InvalidInput(
            "Signing.InvalidSignature",
            f'signature must be {{"type": one of {SIGNATURE_TYPES}, "name": ...}}',
            field="signature",
        )
    name = signature.get("name")
    check_line(name, "signature.name", 200, required=True)
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("Signing.InvalidSignature", "signature.name must not be empty", field="signature.name")
    if signature["type"] == "drawn":
        decode(signature.get("image"))
        return {"type": "drawn", "name": name.strip(), "image": signature["image"]}
    return {"type": "typed", "name": name.strip()}


def sign(ceremonies: Ceremonies, token: str, signature: Any, client: Client) -> dict[str, Any]:
    """Sign in turn, after consent. The last signature completes the envelope; the caller then seals it and
    vaults it in (:func:`vault.ceremony.completion.complete`)."""
    adopted = _adopted(signature)
    now = utcnow()
    with ceremonies.custody.db.session() as session:
        link = open_link(session, ceremonies, token, now)
        recipient, envelope = link.recipient, link.envelope
        if recipient.role != "signer":
            raise Conflict("Signing.NotASigner", "this recipient views the envelope; they do not sign it")
        if recipient.consented_at is None:
            raise Conflict("Signing.ConsentRequired", "consent to electronic records first (POST .../consent)")
        rows = roster(session, envelope.id)
        if recipient.id not in {r.id for r in current_turn(rows)}:
            raise Conflict("Signing.NotYourTurn", "earlier signers have not signed yet", order=recipient.signing_order)
        recipient.status, recipient.signed_at, recipient.signature = "signed", now, adopted
        session.add(recipient)
        append_event(
            session,
            actor=_actor(link),
            envelope_id=envelope.id,
            event_type=RECIPIENT_SIGNED,
            occurred_at=now,
            data={
                **_who(session, link, client, now, adopted_name=adopted["name"]),
                "order": recipient.signing_order,
                "signature_type": adopted["type"],
                "document_sha256": link.ceremony.sha256 or "",
            },
        )
        session.flush()
        following = current_turn(rows)
        if not following:
            transition(envelope, now, status="completed")
            session.add(envelope)
            append_event(
                session,
                actor=_actor(link),
                envelope_id=envelope.id,
                event_type=ENVELOPE_COMPLETED,
                occurred_at=now,
                data={
                    "recipients": [r.id for r in rows if r.role == "signer"],
                    "document_sha256": link.ceremony.sha256 or "",
                },
            )
        elif following[0].signing_order != recipient.signing_order:
            queue_mail(session, ceremonies, following, "link")
        answer = {
            "envelope_id": envelope.id,
            "recipient_id": recipient.id,
            "status": "signed",
            "envelope_status": envelope.status,
        }
    WAKE.set()
    return answer


def decline(ceremonies: Ceremonies, token: str, reason: Any, client: Client) -> dict[str, Any]:
    """A signer declines: the envelope is declined for good, and every link dies with it."""
    check_line(reason, "reason", MAX_REASON, required=True)
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("Envelope.InvalidReason", f"reason must be 1-{MAX_REASON} characters", field="reason")
    now = utcnow()
    with ceremonies.custody.db.session() as session:
        link = open_link(session, ceremonies, token, now)
        recipient, envelope = link.recipient, link.envelope
        if recipient.role != "signer":
            raise Conflict("Signing.NotASigner", "this recipient views the envelope; they do not sign it")
        recipient.status, recipient.declined_at, recipient.decline_reason = "declined", now, reason.strip()
        transition(envelope, now, status="declined")
        session.add_all([recipient, envelope])
        append_event(
            session,
            actor=_actor(link),
            envelope_id=envelope.id,
            event_type=RECIPIENT_DECLINED,
            occurred_at=now,
            data=_who(session, link, client, now, reason=reason.strip()),
        )
        return {
            "envelope_id": envelope.id,
            "recipient_id": recipient.id,
            "status": "declined",
            "envelope_status": envelope.status,
        }
