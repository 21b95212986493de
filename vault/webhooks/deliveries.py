"""The outbox as the organisation sees it: its deliveries, newest first, and sending one again.

A page is ordered by (created_at, id) descending and its cursor is the last row's position, as for envelopes.
A redelivery keeps the delivery's ``webhook-id`` (it is the same event: a receiver that already processed it
may de-duplicate) and starts the retry schedule again; it is refused while an attempt is in flight, and while
the webhook is disabled (it would only wait).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from sqlmodel import col, or_, select

from compliance.errors import Conflict, InvalidInput, NotFound
from storage.db import Database
from storage.ids import as_utc, iso, utcnow
from storage.models import WebhookAttempt, WebhookConfig, WebhookDelivery
from vault.webhooks.outbox import WAKE

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
SHOWN_ATTEMPTS = 20


def _encode(row: WebhookDelivery) -> str:
    raw = json.dumps([iso(row.created_at), row.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        created, delivery_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(delivery_id, str):
            raise TypeError(delivery_id)
        return as_utc(datetime.fromisoformat(created)), delivery_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("Request.InvalidCursor", "cursor is not one this API issued", field="cursor") from None


def _view(row: WebhookDelivery, attempts: list[WebhookAttempt]) -> dict[str, Any]:
    return {
        "id": row.id,
        "webhook_id": row.webhook_id,
        "event_type": row.event_type,
        "envelope_id": row.envelope_id,
        "log_index": row.leaf_index,
        "status": row.status,
        "attempt_count": row.attempts,
        "attempts": [
            {
                "attempted_at": iso(a.attempted_at),
                "outcome": a.outcome,
                "http_status": a.http_status,
                "error": a.error,
                "duration_ms": a.duration_ms,
            }
            for a in attempts
        ],
        "next_attempt_at": iso(row.next_attempt_at) if row.next_attempt_at and row.claimed_by is None else None,
        "in_flight": row.claimed_by is not None,
        "created_at": iso(row.created_at),
    }


def _attempts(session: Any, delivery_ids: list[str]) -> dict[str, list[WebhookAttempt]]:
    found: dict[str, list[WebhookAttempt]] = {i: [] for i in delivery_ids}
    query = (
        select(WebhookAttempt)
        .where(col(WebhookAttempt.delivery_id).in_(delivery_ids))
        .order_by(col(WebhookAttempt.id).desc())
    )
    for attempt in session.exec(query):
        if len(found[attempt.delivery_id]) < SHOWN_ATTEMPTS:
            found[attempt.delivery_id].append(attempt)
    return found


def list_deliveries(db: Database, org_id: str, cursor: str | None = None, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """One page, newest first: ``{"items": [...], "next_cursor": str | None}``; each with its latest attempts."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput("Request.Invalid", f"limit must be 1-{MAX_LIMIT}", field="limit")
    query = select(WebhookDelivery).where(WebhookDelivery.org_id == org_id)
    if cursor is not None:
        at, last_id = _decode(cursor)
        query = query.where(
            or_(
                col(WebhookDelivery.created_at) < at,
                (col(WebhookDelivery.created_at) == at) & (col(WebhookDelivery.id) < last_id),
            )
        )
    query = query.order_by(col(WebhookDelivery.created_at).desc(), col(WebhookDelivery.id).desc()).limit(limit + 1)
    with db.read_session() as session:
        rows = list(session.exec(query))
        page = rows[:limit]
        attempts = _attempts(session, [row.id for row in page])
    return {
        "items": [_view(row, attempts[row.id]) for row in page],
        "next_cursor": _encode(page[-1]) if len(rows) > limit else None,
    }


def redeliver(db: Database, org_id: str, delivery_id: str) -> dict[str, Any]:
    """Make the delivery due now with a fresh schedule; 409 while an attempt of it is in flight or the webhook is
    disabled."""
    now = utcnow()
    with db.session() as session:
        row = session.exec(
            select(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.org_id == org_id)
            .with_for_update()
        ).first()
        if row is None:
            raise NotFound("Delivery.NotFound", "no such webhook delivery in your organisation")
        if row.claimed_by is not None:
            raise Conflict("Delivery.InFlight", "an attempt of this delivery is in flight; retry when it ends")
        config = session.get(WebhookConfig, org_id)
        if config is not None and config.disabled_at is not None:
            raise Conflict(
                "Webhook.Disabled",
                "the webhook is disabled: enable it (PATCH /webhook with enabled true) first",
                disabled_reason=config.disabled_reason,
            )
        row.status, row.next_attempt_at, row.retry_step = "pending", now, 0
        session.add(row)
        view = _view(row, _attempts(session, [row.id])[row.id])
    WAKE.set()
    return view
