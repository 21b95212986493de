"""Send, remind and the links: the partner's side of a ceremony.

``send`` fixes the document and the roster (``envelope.sent``, with each recipient's commitment) and emails the
first signers their link and every viewer theirs; later signers get theirs when their turn comes
(:mod:`vault.ceremony.signing`). ``remind`` emails again the signers whose turn it is and who have not signed,
at most once per ``EVAULT_REMIND_INTERVAL_SECONDS`` per envelope, except the first remind after send.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlmodel import Session

from compliance.errors import Conflict, InvalidInput, RateLimited
from compliance.ledger.event_catalogue import ENVELOPE_REMINDED, ENVELOPE_SENT
from compliance.ledger.events import Actor, append_event
from storage.ids import as_utc, iso, utcnow
from storage.models import Ceremony, Envelope, Recipient
from vault.ceremony.context import Ceremonies
from vault.ceremony.mail import WAKE, queue_mail
from vault.ceremony.roster import check_fields_on_pages, commitments, people, roster
from vault.ceremony.tokens import link_token
from vault.custody import OnCommit
from vault.envelopes import get_envelope, lock_envelope
from vault.expiry import settle
from vault.lifecycle import check_if_match, require_not_due, transition

OPEN_SIGNER = ("pending", "viewed", "consented")


def current_turn(rows: list[Recipient]) -> list[Recipient]:
    """The signers whose turn it is: those of the lowest order that still has a signer who has not signed."""
    waiting = [r for r in rows if r.role == "signer" and r.status in OPEN_SIGNER]
    if not waiting:
        return []
    turn = min(r.signing_order for r in waiting)
    return [r for r in waiting if r.signing_order == turn]


def _esign(envelope: Envelope) -> None:
    if envelope.kind != "esign":
        raise Conflict("Ceremony.NotEsign", "only an e-sign envelope has a signing ceremony", kind=envelope.kind)


def send_envelope(
    ceremonies: Ceremonies,
    actor: Actor,
    envelope_id: str,
    *,
    if_match: str | None = None,
    on_commit: OnCommit | None = None,
) -> Envelope:
    custody = ceremonies.custody
    settle(custody, actor.org_id, envelope_id)
    now = utcnow()
    with custody.db.session() as session:
        envelope = lock_envelope(session, actor.org_id, envelope_id)
        _esign(envelope)
        check_if_match(envelope, if_match)
        require_not_due(envelope, now)
        ceremony = session.get(Ceremony, envelope.id)
        if envelope.status == "draft" and (ceremony is None or ceremony.document_id is None):
            raise Conflict("Ceremony.NoDocument", "upload the document to sign first (POST .../upload)")
        rows = roster(session, envelope.id)
        if envelope.status == "draft" and not any(r.role == "signer" for r in rows):
            raise Conflict("Ceremony.NoSigner", "the envelope needs at least one recipient with role signer")
        party = envelope.secured_party
        if envelope.status == "draft" and not (isinstance(party, dict) and str(party.get("name") or "").strip()):
            raise InvalidInput(
                "Envelope.SecuredPartyRequired",
                "name the secured party before send: the completed envelope is vaulted in by itself",
                field="secured_party",
            )
        transition(envelope, now, status="sent")
        assert ceremony is not None and ceremony.pages is not None  # a document is staged (checked above)
        check_fields_on_pages(rows, ceremony.pages)
        ceremony.sent_at, ceremony.sent_by, ceremony.reminded_at = now, actor.as_json(), None
        session.add_all([envelope, ceremony])
        committed = commitments(session, rows)
        append_event(
            session,
            actor=actor,
            envelope_id=envelope.id,
            event_type=ENVELOPE_SENT,
            occurred_at=now,
            data={
                "document": {
                    "id": ceremony.document_id,
                    "filename": ceremony.filename,
                    "sha256": ceremony.sha256,
                    "pages": len(ceremony.pages),
                    # What a rebuild from the log alone needs (docs/rebuild.md); none of it is personal data.
                    "size": ceremony.size,
                    "page_sizes": ceremony.pages,
                },
                "recipients": [
                    {
                        "recipient_id": r.id,
                        "role": r.role,
                        "order": r.signing_order,
                        "fields": len(r.fields),
                        "position": r.position,
                        "placements": r.fields,
                    }
                    for r in rows
                ],
                "signers": [committed[r.id] for r in rows if r.id in committed],
                "subjects": [r.subject_id for r in rows],
            },
        )
        queue_mail(session, ceremonies, [r for r in rows if r.role == "viewer"] + current_turn(rows), "link")
        if on_commit is not None:
            on_commit(session, envelope)
    WAKE.set()
    return envelope


Reminded = Callable[[Session, Envelope, list[str]], None]


def remind_envelope(
    ceremonies: Ceremonies, actor: Actor, envelope_id: str, *, on_commit: Reminded | None = None
) -> list[str]:
    """Email the link again to the signers whose turn it is; their emails (and nobody else's)."""
    custody = ceremonies.custody
    settle(custody, actor.org_id, envelope_id)
    now = utcnow()
    with custody.db.session() as session:
        envelope = lock_envelope(session, actor.org_id, envelope_id)
        _esign(envelope)
        require_not_due(envelope, now)
        if envelope.status != "sent":
            raise Conflict(
                "Envelope.InvalidTransition",
                f"only a sent envelope has signers to remind; it is {envelope.status}",
                status=envelope.status,
                vault_state=envelope.vault_state,
            )
        ceremony = session.get(Ceremony, envelope.id)
        assert ceremony is not None  # a sent e-sign envelope has its ceremony
        interval = timedelta(seconds=ceremonies.settings.remind_interval_seconds)
        if ceremony.reminded_at is not None and as_utc(ceremony.reminded_at) + interval > now:
            wait = as_utc(ceremony.reminded_at) + interval - now
            raise RateLimited(
                "Ceremony.RemindTooSoon",
                "this envelope's signers were reminded recently",
                retry_after_seconds=max(1, int(wait.total_seconds()) + 1),
                last_reminded_at=iso(ceremony.reminded_at),
            )
        turn = current_turn(roster(session, envelope.id))
        shown = people(session, turn)
        emails = [shown[r.id].get("email", "") for r in turn]
        ceremony.reminded_at = now
        session.add(ceremony)
        append_event(
            session,
            actor=actor,
            envelope_id=envelope.id,
            event_type=ENVELOPE_REMINDED,
            occurred_at=now,
            data={"recipients": [r.id for r in turn]},
        )
        queue_mail(session, ceremonies, turn, "reminder")
        if on_commit is not None:
            on_commit(session, envelope, emails)
    WAKE.set()
    return emails


def signing_links(ceremonies: Ceremonies, org_id: str, envelope_id: str) -> dict[str, Any]:
    """Every recipient's link once the envelope is sent (whatever their turn); none before."""
    custody = ceremonies.custody
    settle(custody, org_id, envelope_id)
    with custody.db.read_session() as session:
        envelope = get_envelope(session, org_id, envelope_id)
        _esign(envelope)
        ceremony = session.get(Ceremony, envelope.id)
        if ceremony is None or ceremony.sent_at is None:
            raise Conflict(
                "Ceremony.NotSent", "links exist once the envelope is sent (POST .../send)", status=envelope.status
            )
        rows = roster(session, envelope.id)
        shown = people(session, rows)
        expires = ceremonies.links_expire(envelope, ceremony)
    return {
        "links": [
            {
                "recipient_id": r.id,
                "email": shown[r.id].get("email"),
                "role": r.role,
                "order": r.signing_order,
                "status": r.status,
                "url": ceremonies.link_url(link_token(ceremonies.link_secret, r)),
                "expires_at": iso(expires) if expires else None,
            }
            for r in rows
        ]
    }
