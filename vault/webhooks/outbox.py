"""The outbox: a delivery row joins every webhook-worthy ledger event in the event's own transaction.

One hook, not one call per route: a ``before_flush`` listener on every session looks at the new ledger
:class:`~storage.models.Event` rows about to be written and, for each whose type has a webhook event and whose
organisation has a webhook configured and enabled, adds a :class:`~storage.models.WebhookDelivery`. Both commit
or roll back together, so an event is never announced that did not happen, nor lost once it did. A commit that
queued a delivery wakes this process's sender at once; another process's sender finds it on its next poll.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session
from sqlmodel import col

from storage.ids import new_id, utcnow
from storage.models import Envelope, Event, WebhookConfig, WebhookDelivery
from vault.webhooks.events import WEBHOOK_EVENTS, recipients, webhook_body

WAKE = threading.Event()  # set when this process committed a delivery; the sender waits on it
_QUEUED = "evault.webhooks.queued"


# Whether an organisation has an enabled webhook, in its own words: every flushed event asks, and the whole row
# (or the ORM around it) is not needed for a yes or no. Built once.
_CONFIGURED = select(col(WebhookConfig.org_id)).where(
    col(WebhookConfig.org_id) == bindparam("org_id"), col(WebhookConfig.disabled_at).is_(None)
)


def _queue(session: Session, _context: Any, _instances: Any) -> None:
    for row in list(session.new):
        if not isinstance(row, Event):
            continue
        spec = WEBHOOK_EVENTS.get(row.event_type)
        if spec is None:
            continue
        envelope = session.get(Envelope, row.envelope_id) if row.envelope_id else None
        for org_id in recipients(row, envelope):
            if session.connection().execute(_CONFIGURED, {"org_id": org_id}).first() is None:
                continue
            now = utcnow()
            session.add(
                WebhookDelivery(
                    id=new_id("whd"),
                    org_id=org_id,
                    webhook_id=new_id("msg"),
                    event_type=spec.name,
                    leaf_index=row.leaf_index,
                    envelope_id=row.envelope_id,
                    body=webhook_body(row, spec),
                    status="pending",
                    next_attempt_at=now,
                    created_at=now,
                )
            )
            session.info[_QUEUED] = True


def _committed(session: Session) -> None:
    if session.info.pop(_QUEUED, False):
        WAKE.set()


def _rolled_back(session: Session, *_: Any) -> None:
    session.info.pop(_QUEUED, None)


def install_outbox() -> None:
    """Listen on every session of this process (idempotent); the API, the CLI and the tests call it once."""
    for name, listener in (
        ("before_flush", _queue),
        ("after_commit", _committed),
        ("after_soft_rollback", _rolled_back),
    ):
        if not sa_event.contains(Session, name, listener):
            sa_event.listen(Session, name, listener)
