"""Reading envelopes: one in full, its status alone, or an organisation's list.

A read applies a due expiry first, so a deadline shows the moment it passes. Lists are filtered and paged.
Order is (created_at, id), which never changes for a row, so a page boundary is a position, not an offset:
the cursor is that position, base64url-encoded and checked on the way back in (a cursor that does not decode
to a timestamp and an envelope id is 400 ``Request.InvalidCursor``). Rows created after a listing began
appear at its end; none is skipped or repeated.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import col, or_, select

from compliance.errors import InvalidInput
from storage.ids import as_utc, iso
from storage.models import Envelope
from vault.custody import Custody
from vault.envelopes import ENVELOPE_ID, KINDS, describe, get_envelope, held_by, summary
from vault.expiry import expire_due, settle
from vault.field_limits import MAX_EXTERNAL_ID
from vault.lifecycle import STATUSES, VAULT_STATES, etag

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


@dataclass(frozen=True)
class EnvelopeFilter:
    status: str | None = None
    vault_state: str | None = None
    kind: str | None = None
    external_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None

    def check(self) -> None:
        for name, value, allowed in (
            ("status", self.status, STATUSES),
            ("vault_state", self.vault_state, VAULT_STATES),
            ("kind", self.kind, KINDS),
        ):
            if value is not None and value not in allowed:
                raise InvalidInput("Request.Invalid", f"{name} must be one of {allowed}", field=name)
        if self.external_id is not None and ("\x00" in self.external_id or len(self.external_id) > MAX_EXTERNAL_ID):
            raise InvalidInput(
                "Request.Invalid",
                f"external_id is at most {MAX_EXTERNAL_ID} characters, without NUL",
                field="external_id",
            )


def encode_cursor(envelope: Envelope) -> str:
    raw = json.dumps([iso(envelope.created_at), envelope.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, envelope_id = json.loads(raw)
        at = as_utc(datetime.fromisoformat(created))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("Request.InvalidCursor", "cursor is not one this API issued", field="cursor") from None
    if not isinstance(envelope_id, str) or not ENVELOPE_ID.fullmatch(envelope_id):
        raise InvalidInput("Request.InvalidCursor", "cursor is not one this API issued", field="cursor")
    return at, envelope_id


def show_envelope(custody: Custody, org_id: str, envelope_id: str) -> tuple[dict[str, Any], str]:
    """The envelope in full and its ETag."""
    settle(custody, org_id, envelope_id)
    with custody.db.read_session() as session:
        envelope = get_envelope(session, org_id, envelope_id)
        return describe(session, envelope), etag(envelope)


def envelope_status(custody: Custody, org_id: str, envelope_id: str) -> tuple[dict[str, Any], str]:
    """For polling: the states and revision only, with the same ETag as the full read."""
    settle(custody, org_id, envelope_id)
    with custody.db.read_session() as session:
        envelope = get_envelope(session, org_id, envelope_id)
    view = {
        "id": envelope.id,
        "status": envelope.status,
        "vault_state": envelope.vault_state,
        "revision": envelope.revision,
        "updated_at": iso(envelope.updated_at),
    }
    return view, etag(envelope)


def _utc_bound(value: datetime) -> datetime:
    """``value`` in UTC, or the first or last instant Python holds when it lies beyond them: year 1 at +20:26 is
    before year 1 in UTC, a valid RFC 3339 date-time before every row, and the filter keeps what the instant
    itself would (nothing is older, everything is newer)."""
    try:
        return as_utc(value)
    except OverflowError:
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


def list_envelopes(
    custody: Custody, org_id: str, where: EnvelopeFilter, cursor: str | None = None, limit: int = DEFAULT_LIMIT
) -> dict[str, Any]:
    """One page: ``{"items": [...], "next_cursor": str | None}``."""
    where.check()
    expire_due(custody, org_id)
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput("Request.Invalid", f"limit must be 1-{MAX_LIMIT}", field="limit")
    query = select(Envelope).where(held_by(org_id))
    for column, value in (
        (Envelope.status, where.status),
        (Envelope.vault_state, where.vault_state),
        (Envelope.kind, where.kind),
        (Envelope.external_id, where.external_id),
    ):
        if value is not None:
            query = query.where(column == value)
    for moment, after, before in (
        (Envelope.created_at, where.created_after, where.created_before),
        (Envelope.updated_at, where.updated_after, where.updated_before),
    ):
        if after is not None:
            query = query.where(col(moment) > _utc_bound(after))
        if before is not None:
            query = query.where(col(moment) < _utc_bound(before))
    if cursor is not None:
        at, last_id = decode_cursor(cursor)
        query = query.where(
            or_(col(Envelope.created_at) > at, (col(Envelope.created_at) == at) & (col(Envelope.id) > last_id))
        )
    query = query.order_by(col(Envelope.created_at), col(Envelope.id)).limit(limit + 1)
    with custody.db.read_session() as session:
        rows = list(session.exec(query))
    page = rows[:limit]
    return {
        "items": [summary(row) for row in page],
        "next_cursor": encode_cursor(page[-1]) if len(rows) > limit else None,
    }
