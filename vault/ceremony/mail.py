"""Emails to recipients (their signing link, a reminder), queued in the change's transaction and sent after it.

A row of ``mail_message`` commits with the send or remind that owes it; a sender thread (the runtime's) or
:func:`deliver_due` delivers it over SMTP (``EVAULT_SMTP_URL``) and retries with backoff, so a mail server
that is down fails no request and loses no email. Without SMTP configured nothing is queued: links come from
the API alone. The address is read from the recipient's data subject at sending time, never copied.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
from datetime import datetime, timedelta
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from sqlalchemy import update
from sqlmodel import Session, col, select

from storage.ids import new_id, utcnow
from storage.models import Envelope, MailMessage, Recipient
from vault.ceremony.context import Ceremonies
from vault.ceremony.roster import people
from vault.ceremony.tokens import link_token

log = logging.getLogger("evault.mail")
WAKE = threading.Event()  # set when this process queued a message: the sender sends at once
BACKOFF = (10.0, 60.0, 300.0, 1800.0, 7200.0)  # then failed
TIMEOUT_SECONDS = 15


def queue_mail(session: Session, ceremonies: Ceremonies, recipients: list[Recipient], kind: str) -> None:
    """One message per recipient, in the caller's transaction; nothing when no SMTP server is configured."""
    if not ceremonies.settings.smtp_url:
        return
    now = utcnow()
    for recipient in recipients:
        session.add(
            MailMessage(
                id=new_id("mail"),
                org_id=recipient.org_id,
                envelope_id=recipient.envelope_id,
                recipient_id=recipient.id,
                kind=kind,
                status="pending",
                next_attempt_at=now,
                created_at=now,
            )
        )


def _message(ceremonies: Ceremonies, envelope: Envelope, recipient: Recipient, to: str, kind: str) -> EmailMessage:
    url = ceremonies.link_url(link_token(ceremonies.link_secret, recipient))
    message = EmailMessage()
    message["From"] = ceremonies.settings.smtp_from
    message["To"] = to
    verb = "Reminder: please sign" if kind == "reminder" else "Please sign"
    message["Subject"] = f"{verb}: {envelope.title}"[:200]
    message.set_content(
        f'You are asked to {"sign" if recipient.role == "signer" else "review"} "{envelope.title}".\n\n'
        f"Open your personal link (do not forward it):\n{url}\n"
    )
    return message


def _smtp_send(url: str, message: EmailMessage) -> None:
    parts = urlsplit(url)
    port = parts.port or (465 if parts.scheme == "smtps" else 25)
    host = parts.hostname or "localhost"
    if parts.scheme == "smtps":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            host, port, timeout=TIMEOUT_SECONDS, context=ssl.create_default_context()
        )
    else:
        client = smtplib.SMTP(host, port, timeout=TIMEOUT_SECONDS)
    with client:
        client.ehlo()
        if parts.scheme == "smtp" and client.has_extn("starttls"):
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        if parts.username:
            client.login(unquote(parts.username), unquote(parts.password or ""))
        client.send_message(message)


def _due(session: Session, now: datetime, limit: int) -> list[MailMessage]:
    return list(
        session.exec(
            select(MailMessage)
            .where(MailMessage.status == "pending", col(MailMessage.next_attempt_at) <= now)
            .order_by(col(MailMessage.next_attempt_at), col(MailMessage.id))
            .limit(limit)
        )
    )


def deliver_due(ceremonies: Ceremonies, limit: int = 50) -> int:
    """Send what is due now; each message is taken by a conditional update, so two senders never both send it."""
    url = ceremonies.settings.smtp_url
    if not url:
        return 0
    db = ceremonies.custody.db
    with db.read_session() as session:
        due = _due(session, utcnow(), limit)
    sent = 0
    for item in due:
        lease = utcnow() + timedelta(seconds=TIMEOUT_SECONDS * 4)
        with db.session() as session:
            taken = session.exec(
                update(MailMessage)
                .where(col(MailMessage.id) == item.id, col(MailMessage.status) == "pending")
                .where(col(MailMessage.next_attempt_at) == item.next_attempt_at)
                .values(next_attempt_at=lease, attempts=col(MailMessage.attempts) + 1)
            )
            if taken.rowcount != 1:
                continue
            recipient = session.get(Recipient, item.recipient_id)
            envelope = session.get(Envelope, item.envelope_id)
            to = people(session, [recipient]).get(recipient.id, {}).get("email") if recipient else None
        if recipient is None or envelope is None or not to:
            _finish(ceremonies, item.id, "failed", "the recipient or their address is gone")
            continue
        try:
            _smtp_send(url, _message(ceremonies, envelope, recipient, to, item.kind))
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("email %s not sent, will retry: %s", item.id, exc)
            _finish(ceremonies, item.id, "pending", f"{type(exc).__name__}: {exc}"[:500], item.attempts + 1)
            continue
        _finish(ceremonies, item.id, "sent", None)
        sent += 1
    return sent


def _finish(ceremonies: Ceremonies, message_id: str, status: str, error: str | None, attempts: int = 0) -> None:
    now = utcnow()
    with ceremonies.custody.db.session() as session:
        row = session.get(MailMessage, message_id)
        if row is None:
            return
        if status == "pending" and attempts > len(BACKOFF):
            status = "failed"
        row.status = status
        row.last_error = error
        row.next_attempt_at = now + timedelta(seconds=BACKOFF[attempts - 1]) if status == "pending" else None
        row.sent_at = now if status == "sent" else None
        session.add(row)


def run_mailer(ceremonies: Ceremonies, stop: threading.Event, interval: float = 5.0) -> None:
    """The runtime's mail thread: send what is due, then wait for a wake-up or the interval."""
    while not stop.is_set():
        try:
            deliver_due(ceremonies)
        except Exception as exc:  # a passing database fault: the next round retries
            log.warning("mail delivery round failed: %s", exc)
        WAKE.wait(interval)
        WAKE.clear()
