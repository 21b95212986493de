"""Leases: one holder at a time across processes and replicas for a named piece of work, with fencing.

A lease is a row (``name``, ``holder``, ``token``, ``expires_at``). A holder takes it when it is free or
expired and renews it while it works; taking it over (a new holder, or the same one after it lapsed)
increments ``token``, the fencing token of that tenure. Work that writes checks, in the transaction of its
write, that its tenure still holds (``holds`` locks the row until commit), so a holder that paused past its
lease cannot overwrite what the next one did. A holder that dies stops renewing: its lease lapses after the
TTL and the next taker gets a larger token. SQLite serialises writers anyway (one process); PostgreSQL locks
the row (``SELECT ... FOR UPDATE``).

Names in use: ``webhook-sender``, ``reconciler``, ``expiry-sweep``, ``staging-sweep`` and
``checkpointer:<org_id>`` (one per log).
"""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from storage.db import Database
from storage.ids import as_utc, utcnow
from storage.models import Lease


def new_holder() -> str:
    """A holder name unique to this process's job: the host for the operator, random for uniqueness."""
    return f"{socket.gethostname()[:40]}:{secrets.token_hex(8)}"


@dataclass(frozen=True)
class Tenure:
    """One holder's tenure of one lease: what a fenced write checks."""

    name: str
    holder: str
    token: int


def lock_lease(session: Session, name: str) -> Lease:
    """The lease row, created free if it is new, locked until the caller's transaction ends."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert(Lease)
        .values(name=name, holder="", token=0, expires_at=utcnow() - timedelta(seconds=1))
        .on_conflict_do_nothing()
    )
    return session.exec(select(Lease).where(Lease.name == name).with_for_update()).one()


def take_lease(db: Database, name: str, holder: str, ttl: timedelta) -> Tenure | None:
    """This holder's tenure, renewed for ``ttl``; None while another holds it."""
    now = utcnow()
    with db.session() as session:
        lease = lock_lease(session, name)
        live = as_utc(lease.expires_at) > now
        if live and lease.holder != holder:
            return None
        if not live or lease.holder != holder:
            lease.token += 1
        lease.holder, lease.expires_at = holder, now + ttl
        session.add(lease)
        return Tenure(name, holder, lease.token)


def holds(session: Session, tenure: Tenure) -> bool:
    """In the caller's transaction: the tenure still holds its lease (the row stays locked until commit)."""
    lease = lock_lease(session, tenure.name)
    return lease.holder == tenure.holder and lease.token == tenure.token and as_utc(lease.expires_at) > utcnow()


def give_up(db: Database, name: str, holder: str) -> None:
    """Let the next holder take over at once (a clean stop, or a job that is done for now)."""
    with db.session() as session:
        lease = lock_lease(session, name)
        if lease.holder == holder:
            lease.expires_at = utcnow() - timedelta(seconds=1)
            session.add(lease)
