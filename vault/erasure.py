"""Erasing a person: their values and their commitment key go, the log's commitment and every proof stay.

The operator erases on a data subject's request (GDPR art. 17 and the like). The erasure is itself an event in
the envelope's chain (``subject.erased``, naming only the subject id), caused by the operator rather than an API
key, so the history shows that values once committed to can no longer be opened, and why not.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from compliance.errors import InvalidInput, NotFound
from compliance.ledger.event_catalogue import SUBJECT_ERASED
from compliance.ledger.events import Actor, append_event
from compliance.ledger.personal_data import SUBJECT_ID
from storage.db import Database
from storage.ids import utcnow
from storage.models import DataSubject


def subjects_by_email(session: Session, org_id: str, email: str) -> list[str]:
    """The subjects of one organisation whose values name this email (case-insensitive), erased or not."""
    rows = session.exec(select(DataSubject).where(DataSubject.org_id == org_id).order_by(col(DataSubject.id)))
    wanted = email.strip().casefold()
    return [row.id for row in rows if str((row.clear or {}).get("email", "")).strip().casefold() == wanted]


def erase_subject(db: Database, subject_id: str) -> tuple[DataSubject, bool]:
    """Erase one subject (locked, so two erasures record one event); (the row, whether it was erased now)."""
    if not SUBJECT_ID.fullmatch(subject_id):
        raise InvalidInput("Subject.InvalidId", "a subject id is sub_ and 20 characters", subject=subject_id)
    with db.session() as session:
        subject = session.exec(select(DataSubject).where(DataSubject.id == subject_id).with_for_update()).first()
        if subject is None:
            raise NotFound("Subject.NotFound", "no such data subject", subject=subject_id)
        if subject.erased_at is not None:
            return subject, False
        now = utcnow()
        subject.key, subject.clear, subject.erased_at = None, None, now
        session.add(subject)
        append_event(
            session,
            actor=Actor(org_id=subject.org_id, source="operator"),
            envelope_id=subject.envelope_id,
            event_type=SUBJECT_ERASED,
            occurred_at=now,
            data={"subject": subject.id},
        )
        return subject, True
