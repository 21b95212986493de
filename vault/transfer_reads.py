"""Reading transfers: one, or a page of an organisation's incoming and outgoing ones.

Both parties see a transfer, also after the record left one of them; anyone else gets 404. A read applies a
due expiry first (as envelope reads do), so a deadline shows the moment it passes. Lists page by
(created_at, id), like the envelope list, with the same kind of opaque cursor.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from sqlmodel import col, or_, select

from compliance.errors import InvalidInput
from storage.ids import as_utc, iso, utcnow
from storage.models import Transfer
from vault.custody import Custody
from vault.listing import DEFAULT_LIMIT, MAX_LIMIT
from vault.transfers import OPEN, STATUSES, TRANSFER_ID, expire_visible, visible_transfer

DIRECTIONS = ("incoming", "outgoing")


def _at(value: datetime | None) -> str | None:
    return iso(value) if value else None


def transfer_view(transfer: Transfer) -> dict[str, Any]:
    """The transfer as the API shows it to either party; ``log`` names its entries in the record's log."""
    return {
        "id": transfer.id,
        "envelope_id": transfer.envelope_id,
        "from_organisation": transfer.from_org_id,
        "to_organisation": transfer.to_org_id,
        "type": transfer.type,
        "status": transfer.status,
        "confirm_required": transfer.confirm_required,
        "note": transfer.note,
        "reason": transfer.reason,
        "expires_at": _at(transfer.expires_at),
        "created_at": iso(transfer.created_at),
        "accepted_at": _at(transfer.accepted_at),
        "completed_at": _at(transfer.completed_at),
        "closed_at": _at(transfer.closed_at),
        "log": {
            "organisation": transfer.org_id,
            "initiated_index": transfer.initiated_index,
            "accepted_index": transfer.accepted_index,
            "completed_index": transfer.completed_index,
        },
    }


def show_transfer(custody: Custody, org_id: str, transfer_id: str) -> dict[str, Any]:
    expire_visible(custody, org_id, transfer_id)
    with custody.db.read_session() as session:
        return transfer_view(visible_transfer(session, org_id, transfer_id))


def _cursor(transfer: Transfer) -> str:
    raw = json.dumps([iso(transfer.created_at), transfer.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        created, transfer_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        at = as_utc(datetime.fromisoformat(created))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("Request.InvalidCursor", "cursor is not one this API issued", field="cursor") from None
    if not isinstance(transfer_id, str) or not TRANSFER_ID.fullmatch(transfer_id):
        raise InvalidInput("Request.InvalidCursor", "cursor is not one this API issued", field="cursor")
    return at, transfer_id


def list_transfers(
    custody: Custody,
    org_id: str,
    direction: str | None = None,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """One page of the organisation's transfers: ``{"items": [...], "next_cursor": str | None}``."""
    if direction is not None and direction not in DIRECTIONS:
        raise InvalidInput("Request.Invalid", f"direction must be one of {DIRECTIONS}", field="direction")
    if status is not None and status not in STATUSES:
        raise InvalidInput("Request.Invalid", f"status must be one of {STATUSES}", field="status")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput("Request.Invalid", f"limit must be 1-{MAX_LIMIT}", field="limit")
    mine: Any = {
        "incoming": Transfer.to_org_id == org_id,
        "outgoing": Transfer.from_org_id == org_id,
        None: or_(Transfer.to_org_id == org_id, Transfer.from_org_id == org_id),
    }[direction]
    now = utcnow()
    with custody.db.read_session() as session:
        due = session.exec(
            select(Transfer.id).where(mine, col(Transfer.status).in_(OPEN), col(Transfer.expires_at) <= now)
        ).all()
    for transfer_id in due:
        expire_visible(custody, org_id, transfer_id)
    query = select(Transfer).where(mine)
    if status is not None:
        query = query.where(Transfer.status == status)
    if cursor is not None:
        at, last = _decode(cursor)
        query = query.where(
            or_(col(Transfer.created_at) > at, (col(Transfer.created_at) == at) & (col(Transfer.id) > last))
        )
    query = query.order_by(col(Transfer.created_at), col(Transfer.id)).limit(limit + 1)
    with custody.db.read_session() as session:
        rows = list(session.exec(query))
    page = rows[:limit]
    return {"items": [transfer_view(t) for t in page], "next_cursor": _cursor(page[-1]) if len(rows) > limit else None}
