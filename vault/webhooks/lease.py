"""The sender's lease: one sender at a time across processes, each tenure with a larger fencing token.

A sender takes the lease when it is free or expired and renews it while it holds it. Taking it over (a new
holder, or the same one after it lapsed) increments ``token``; the sender stamps its claims with the token and
records an attempt only while its claim still carries it, so a sender that paused past its lease cannot
overwrite what the next one did. SQLite serialises writers anyway (one process); PostgreSQL locks the row.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from storage.db import Database
from storage.ids import as_utc, utcnow
from storage.models import WebhookLease

LEASE = "webhook-sender"


def lock_lease(session: Session) -> WebhookLease:
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert(WebhookLease)
        .values(name=LEASE, holder="", token=0, expires_at=utcnow() - timedelta(seconds=1))
        .on_conflict_do_nothing()
    )
    return session.exec(select(WebhookLease).where(WebhookLease.name == LEASE).with_for_update()).one()


def take_lease(db: Database, holder: str, ttl: timedelta) -> int | None:
    """The fencing token of this holder's tenure, renewed for ``ttl``; None while another holds it."""
    now = utcnow()
    with db.session() as session:
        lease = lock_lease(session)
        live = as_utc(lease.expires_at) > now
        if live and lease.holder != holder:
            return None
        if not live or lease.holder != holder:
            lease.token += 1
        lease.holder, lease.expires_at = holder, now + ttl
        session.add(lease)
        return lease.token


def holds(session: Session, holder: str, token: int) -> bool:
    """In the caller's transaction: this tenure still holds the lease (locked until commit)."""
    lease = lock_lease(session)
    return lease.holder == holder and lease.token == token and as_utc(lease.expires_at) > utcnow()


def give_up(db: Database, holder: str) -> None:
    """Let the next sender take over at once (a clean stop)."""
    with db.session() as session:
        lease = lock_lease(session)
        if lease.holder == holder:
            lease.expires_at = utcnow() - timedelta(seconds=1)
            session.add(lease)
