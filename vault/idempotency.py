"""``Idempotency-Key``: a retried POST replays its first answer instead of acting twice.

A key belongs to one organisation. :func:`begin` commits an in-flight row in its own short transaction (unique
on organisation + key), so of two concurrent requests with one key exactly one proceeds and the other gets 409
``Idempotency.InProgress``. The proceeding request's service then writes the response into that row inside the
transaction of its change (:meth:`Pending.complete`, called from the service's ``on_commit`` hook): the change,
its ledger event and the record commit together or not at all. A request that fails changes nothing and
removes its row (:func:`abandon`), so a retry runs afresh; a row left in flight by a dead process is taken over
after ``lease`` (the API uses ``EVAULT_CLAIM_LEASE_SECONDS``, as long as a vault-in owns its claim), and the
409 says when with ``Retry-After``. The same key with another request (method, path or body) is 409
``Idempotency.KeyReused``. Records expire after the configured window and are swept.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from compliance.errors import Conflict, InvalidInput
from storage.db import Database
from storage.ids import as_utc, iso, new_id, utcnow
from storage.models import IdempotencyRecord

MAX_KEY = 255
# A request header the API reads (Idempotency-Key, If-Match, If-None-Match): visible ASCII, spaces only inside
# (HTTP strips them at the ends). The OpenAPI document states the same pattern.
HEADER_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


@dataclass(frozen=True)
class Replay:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass(frozen=True)
class Pending:
    record_id: str

    def complete(self, session: Session, status: int, body: Any, headers: dict[str, str]) -> None:
        """Store the answer in the caller's transaction; if the row is no longer ours, undo the change."""
        row = session.get(IdempotencyRecord, self.record_id)
        if row is None or row.status is not None:
            raise Conflict("Idempotency.InProgress", "this Idempotency-Key was taken over by another request")
        row.status, row.body, row.headers = status, body, headers
        session.add(row)


def fingerprint(method: str, target: str, body_digest: str) -> str:
    """What makes two requests 'the same': method, path with query, and a digest of the body's content."""
    return hashlib.sha256(f"{method.upper()}\n{target}\n{body_digest}".encode()).hexdigest()


def check_key(key: str) -> None:
    if len(key) > MAX_KEY or not HEADER_VALUE.fullmatch(key):
        raise InvalidInput(
            "Idempotency.InvalidKey",
            f"Idempotency-Key is 1-{MAX_KEY} printable ASCII characters",
            field="Idempotency-Key",
        )


def _settle_existing(session: Session, row: IdempotencyRecord, fp: str, lease: timedelta) -> Replay | None:
    """Replay, refuse, or delete (expired or abandoned) an existing row; None means: proceed with a new row."""
    now = utcnow()
    if as_utc(row.expires_at) <= now:
        session.delete(row)
    elif row.fingerprint != fp:
        raise Conflict(
            "Idempotency.KeyReused",
            "this Idempotency-Key was used for a different request",
            first_used_at=iso(row.created_at),
        )
    elif row.status is not None:
        return Replay(row.status, row.body, dict(row.headers or {}))
    elif (left := as_utc(row.created_at) + lease - now) > timedelta(0):
        raise Conflict(
            "Idempotency.InProgress",
            "a request with this Idempotency-Key is still in flight; retry later",
            retry_after_seconds=max(1, math.ceil(left.total_seconds())),
        )
    else:
        session.delete(row)  # its request died in flight and changed nothing we recorded
    session.flush()
    return None


def begin(db: Database, org_id: str, key: str, fp: str, ttl: timedelta, lease: timedelta) -> Replay | Pending:
    check_key(key)
    for _ in range(2):
        try:
            with db.session() as session:
                row = session.exec(
                    select(IdempotencyRecord)
                    .where(IdempotencyRecord.org_id == org_id, IdempotencyRecord.key == key)
                    .with_for_update()
                ).first()
                if row is not None and (replay := _settle_existing(session, row, fp, lease)) is not None:
                    return replay
                now = utcnow()
                pending = IdempotencyRecord(
                    id=new_id("idk"), org_id=org_id, key=key, fingerprint=fp, created_at=now, expires_at=now + ttl
                )
                session.add(pending)
            return Pending(pending.id)
        except IntegrityError:
            continue  # a concurrent request inserted it first: look again
    in_flight = "a request with this Idempotency-Key is still in flight; retry later"
    raise Conflict("Idempotency.InProgress", in_flight, retry_after_seconds=1)


def complete_alone(db: Database, pending: Pending, status: int, body: Any, headers: dict[str, str]) -> None:
    """For an answer that changed nothing (a read-only replay by content): the record stands alone."""
    with db.session() as session:
        pending.complete(session, status, body, headers)


def abandon(db: Database, pending: Pending) -> None:
    with db.session() as session:
        row = session.get(IdempotencyRecord, pending.record_id)
        if row is not None and row.status is None:
            session.delete(row)
