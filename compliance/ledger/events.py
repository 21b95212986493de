"""Appending events: one entry is a link of its envelope's hash chain and a leaf of its organisation's log.

The entry is RFC 8785 JSON naming the log, its leaf index, its envelope and the hash of its predecessor in that
envelope's chain, so the chain and the Merkle tree prove each other: an entry cannot move in the tree without
changing its bytes, and a chain link cannot be dropped without breaking the next entry's ``prev``.
Appends for one organisation are serialised by locking its ``log_state`` row in the caller's transaction, so
the event commits or rolls back together with the state change it records.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import rfc8785
from sqlalchemy import bindparam
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from compliance.errors import EvaultError
from compliance.ledger.event_catalogue import CATALOGUE, EventType
from compliance.ledger.merkle import leaf_hash
from compliance.ledger.tiles import TiledTree
from storage.ids import iso
from storage.log_tiles import SqlTileStore
from storage.models import Envelope, Event, LogState

ENTRY_VERSION = 1


_COMPONENT = re.compile(r"[a-z][a-z0-9-]{0,39}")


class UndeclaredEvent(EvaultError):
    """The code tried to log an event the catalogue does not declare, or data outside its schema: our bug (500)."""

    category = "integrity"


def check_declared(event_type: EventType, data: Any, envelope_id: str | None) -> None:
    """Refuse what the catalogue does not declare, before anything is written."""
    if CATALOGUE.get(event_type.name) is not event_type:
        raise UndeclaredEvent("Event.Undeclared", "the event type is not in the catalogue", event_type=event_type.name)
    errors = event_type.schema_errors(data)
    if event_type.envelope != (envelope_id is not None):
        errors.append("an envelope event needs its envelope, and an organisation event has none")
    if errors:
        raise UndeclaredEvent(
            "Event.InvalidData", "the event's data does not fit its schema", event_type=event_type.name, errors=errors
        )


@dataclass(frozen=True)
class Actor:
    """Who caused an event: the organisation and its API key (by id and public prefix), or a named component.

    The log is permanent and public to every auditor of the organisation, so it keeps no personal data: no
    client address and no user agent (a keyed hash of them would still be personal data, and could never be
    erased). ``source`` names a system component that acts without a key (``head-map``), never a client.
    """

    org_id: str
    key_id: str | None = None
    key_prefix: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.source is not None and not _COMPONENT.fullmatch(self.source):
            raise ValueError("Actor.source names a component (lower-case word), never a client address")

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def entry_bytes(
    *,
    org_id: str,
    leaf_index: int,
    envelope_id: str | None,
    chain_seq: int | None,
    prev: str | None,
    event_type: str,
    occurred_at: datetime,
    actor: Actor,
    data: dict[str, Any],
) -> bytes:
    return rfc8785.dumps(
        {
            "v": ENTRY_VERSION,
            "log": org_id,
            "index": leaf_index,
            "envelope": envelope_id,
            "seq": chain_seq,
            "prev": prev,
            "type": event_type,
            "time": iso(occurred_at),
            "actor": actor.as_json(),
            "data": data,
        }
    )


# Built once (every append runs them, and building a statement costs more than SQLite takes to run it).
_LOCK_STATE = select(LogState).where(LogState.org_id == bindparam("org_id")).with_for_update()
_HEAD_LINK = (
    select(Event.chain_seq, Event.entry_hash, Event.org_id)
    .where(Event.envelope_id == bindparam("envelope_id"))
    .order_by(col(Event.chain_seq).desc())
    .limit(1)
)


def _locked_state(session: Session, org_id: str) -> LogState:
    """The organisation's ``log_state`` row, locked; made first (once per organisation) if it is not there."""
    state = session.exec(_LOCK_STATE, params={"org_id": org_id}).first()
    if state is not None:
        return state
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(insert(LogState).values(org_id=org_id, size=0).on_conflict_do_nothing())
    return session.exec(_LOCK_STATE, params={"org_id": org_id}).one()


def lock_log(session: Session, org_id: str) -> int:
    """Take the organisation's append lock for this transaction and return the log's current size."""
    return _locked_state(session, org_id).size


def chain_head(session: Session, envelope_id: str) -> Event | None:
    return session.exec(
        select(Event).where(Event.envelope_id == envelope_id).order_by(col(Event.chain_seq).desc()).limit(1)
    ).first()


def _home_log(session: Session, envelope_id: str, actor_org: str) -> str:
    home = session.get(Envelope, envelope_id)
    return home.org_id if home is not None else actor_org


def chain_log(session: Session, envelope_id: str, head: Event | None, actor_org: str) -> str:
    """The log an envelope's next entry goes into: its head's, or its registering organisation's when it has none."""
    return head.org_id if head is not None else _home_log(session, envelope_id, actor_org)


def _head_link(session: Session, envelope_id: str) -> tuple[int, str, str] | None:
    """The chain head's sequence number, hash and log: three columns, not the whole entry."""
    head = session.execute(_HEAD_LINK, {"envelope_id": envelope_id}).first()
    return None if head is None else (head[0] or 0, head[1], head[2])


def _lock_chain(
    session: Session, envelope_id: str, log: str | None, actor_org: str
) -> tuple[LogState, tuple[int, str, str] | None]:
    """Lock the log the chain continues in and read the head under that lock: (that log's state, head link).

    The head is read again after the lock: a hand-off that committed meanwhile moved the chain to another log,
    whose lock is then taken too (every lock is held to the end of the transaction, so this settles).
    """
    head = _head_link(session, envelope_id)
    locked: dict[str, LogState] = {}
    while True:
        org_id = log or (head[2] if head is not None else _home_log(session, envelope_id, actor_org))
        if org_id not in locked:
            locked[org_id] = _locked_state(session, org_id)
        again = _head_link(session, envelope_id)
        if log is not None or (again[2] if again is not None else org_id) == org_id:
            return locked[org_id], again
        head = again


def append_event(
    session: Session,
    *,
    actor: Actor,
    event_type: EventType,
    occurred_at: datetime,
    data: dict[str, Any],
    envelope_id: str | None = None,
    log: str | None = None,
) -> Event:
    """Record one declared event in the caller's transaction; nothing is visible unless that transaction commits.

    An envelope's chain continues in the log its last entry is in (:func:`chain_log`): the registering
    organisation's, until a hand-off of control moves it to the receiver's (``log`` names that log; the
    hand-off's own entry passes it); an organisation event goes into the actor's own log.
    """
    check_declared(event_type, data, envelope_id)
    head: tuple[int, str, str] | None = None
    if envelope_id is None:
        state = _locked_state(session, actor.org_id)  # held here: a clean object unreferenced would leave the session
    else:
        state, head = _lock_chain(session, envelope_id, log, actor.org_id)
    org_id, size = state.org_id, state.size
    seq = None if envelope_id is None else (0 if head is None else head[0] + 1)
    prev = None if head is None else head[1]
    entry = entry_bytes(
        org_id=org_id,
        leaf_index=size,
        envelope_id=envelope_id,
        chain_seq=seq,
        prev=prev,
        event_type=event_type.name,
        occurred_at=occurred_at,
        actor=actor,
        data=data,
    )
    tree = TiledTree(SqlTileStore(session, org_id), size)
    new_size = tree.append([leaf_hash(entry)])
    event = Event(
        org_id=org_id,
        leaf_index=size,
        envelope_id=envelope_id,
        chain_seq=seq,
        event_type=event_type.name,
        occurred_at=occurred_at,
        entry=entry,
        entry_hash=hashlib.sha256(entry).hexdigest(),
    )
    session.add(event)
    state.size = new_size
    session.add(state)
    session.flush()
    return event


def envelope_events(session: Session, envelope_id: str) -> list[Event]:
    return list(session.exec(select(Event).where(Event.envelope_id == envelope_id).order_by(col(Event.chain_seq))))


def log_size(session: Session, org_id: str) -> int:
    state = session.get(LogState, org_id)
    return state.size if state else 0
