"""In-flight caps shared by every process and replica: slot leases in the database.

A cap of ``cap`` concurrent holders of ``pool`` for one ``scope`` (an API key, an organisation) is ``cap``
numbered slots, and a held slot is a row of ``slot_lease`` (pool, scope, slot number) with its holder's process,
a ticket for this one holding and an expiry. Taking slot n is a single atomic statement: insert the row, or
on conflict take it over *only if its lease has expired*, returning the ticket; the primary key makes two
takers of one slot exclude each other on SQLite and PostgreSQL alike, with no lock held across statements. A
taker reads which slots are live, tries the free numbers in turn (a racer may win one: then the next) and is
refused when none is left. Releasing deletes the row, if it still carries this ticket.

A process renews the leases it holds every third of ``LEASE_SECONDS`` (one statement per process); a process
that dies (SIGKILL, a lost host) stops renewing, and its slots are free again within ``LEASE_SECONDS``. A
holder whose renewals fail for that long (its database unreachable) may lose its slot to another taker: the
cap is then one over for a while, never stuck. Rows a dead holder left are taken over by the next taker of
their number.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Connection, Insert, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col

from storage.db import Database
from storage.leases import new_holder
from storage.models import SlotLease
from storage.settings import PdfSettings
from vault.slots import Full, Refusal
from vault.stamp_worker import busy

log = logging.getLogger("evault.slots")
LEASE_SECONDS = 30.0  # a dead process's slots are free again within this


@dataclass(frozen=True)
class Cap:
    """At most ``limit`` holders of ``pool`` for ``scope`` at once; refused as ``full`` ("key" or "org")."""

    pool: str
    scope: str
    limit: int
    full: Full


@dataclass(frozen=True)
class Ticket:
    """One held slot: released by deleting its row only while it still carries ``ticket``."""

    pool: str
    scope: str
    slot: int
    ticket: str


class SlotLeases:
    """This process's slot leases in one database: taking, releasing and renewing them."""

    def __init__(self, db: Database, ttl: float = LEASE_SECONDS) -> None:
        self._db = weakref.ref(db)  # the registry below is keyed weakly by the database: no reference back
        self.ttl, self.holder = ttl, new_holder()
        self._held: set[Ticket] = set()
        self._unreleased: list[Ticket] = []  # releases the database refused: retried before the next take
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None

    @property
    def db(self) -> Database:
        db = self._db()
        if db is None:
            raise RuntimeError("the database of these slot leases is gone")
        return db

    def live(self, pool: str, scope: str, now: float | None = None) -> set[int]:
        """The numbers of the slots of ``pool`` for ``scope`` that are held now (by anyone)."""
        return self._live([(pool, scope)], time.time() if now is None else now)[pool, scope]

    def _live(self, keys: Sequence[tuple[str, str]], now: float) -> dict[tuple[str, str], set[int]]:
        """The held slot numbers of each (pool, scope) in ``keys``: one statement for all of them."""
        live: dict[tuple[str, str], set[int]] = {key: set() for key in keys}
        params = {"pools": sorted({p for p, _ in keys}), "scopes": sorted({s for _, s in keys}), "now": now}
        with self.db.read_session() as session:
            for pool, scope, slot in session.connection().execute(_LIVE, params):
                if (pool, scope) in live:  # the IN lists pair every pool with every scope
                    live[pool, scope].add(slot)
        return live

    def _take_slot(self, connection: Connection, pool: str, scope: str, slot: int, now: float) -> Ticket | None:
        """Slot ``slot``, if it is free or its lease expired: one conditional upsert."""
        ticket = secrets.token_hex(16)
        params = {"pool": pool, "scope": scope, "slot": slot, "holder": self.holder, "ticket": ticket}
        params.update(expires_at=now + self.ttl, now=now)
        taken = connection.execute(_take_statement(connection.dialect.name), params).scalar()
        return Ticket(pool, scope, slot, ticket) if taken == ticket else None

    def _first_free(
        self, connection: Connection, pool: str, scope: str, limit: int, live: set[int], now: float
    ) -> Ticket | None:
        """A slot of ``pool`` for ``scope`` below ``limit`` that ``live`` leaves free (a racer may win one: then
        the next)."""
        for slot in range(limit):
            if slot not in live and (ticket := self._take_slot(connection, pool, scope, slot, now)) is not None:
                return ticket
        return None

    def take(self, pool: str, scope: str, cap: int, now: float | None = None) -> Ticket | None:
        """A slot of ``pool`` for ``scope`` while fewer than ``cap`` are held; None when all are."""
        now = time.time() if now is None else now
        live = self.live(pool, scope, now)
        if len(live) >= cap:
            return None
        with self.db.session() as session:
            ticket = self._first_free(session.connection(), pool, scope, cap, live, now)
        if ticket is not None:
            self._hold([ticket])
        return ticket

    def give_back(self, ticket: Ticket) -> None:
        """Release the slot (a lease this holder lost meanwhile is the new holder's, and stays)."""
        self._delete_rows([ticket])

    def _delete_rows(self, tickets: Sequence[Ticket]) -> None:
        """Delete the rows that still carry these tickets: one statement (a ticket is one holding's own)."""
        with self._lock:
            self._held.difference_update(tickets)
        params = {
            "pools": sorted({t.pool for t in tickets}),
            "scopes": sorted({t.scope for t in tickets}),
            "tickets": [t.ticket for t in tickets],
        }
        with self.db.session() as session:
            session.connection().execute(_GIVE_BACK, params)

    def renew(self, now: float | None = None) -> int:
        """Extend every lease this process holds by ``ttl`` from ``now``; how many rows were renewed."""
        now = time.time() if now is None else now
        with self._lock:
            tickets = [held.ticket for held in self._held]
        if not tickets:
            return 0
        with self.db.session() as session:
            result = session.execute(
                update(SlotLease)
                .where(col(SlotLease.holder) == self.holder, col(SlotLease.ticket).in_(tickets))
                .values(expires_at=now + self.ttl)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    def _hold(self, tickets: Sequence[Ticket]) -> None:
        with self._lock:
            self._held.update(tickets)
            if self._renewer is None:
                self._renewer = threading.Thread(target=self._renew_while_held, daemon=True, name="evault-slots")
                self._renewer.start()

    def _renew_while_held(self) -> None:
        """Renew every third of the TTL while this process holds any slot; then end (the next take restarts it)."""
        while True:
            time.sleep(self.ttl / 3)
            with self._lock:
                if not self._held or self._db() is None:  # nothing held, or the database was closed
                    self._renewer = None
                    return
            try:
                self.renew()
            except Exception as exc:  # the database is away: retry next round (the leases last ttl meanwhile)
                log.warning("renewing slot leases failed: %s", exc)

    def acquire(self, caps: Sequence[Cap], refuse: Refusal) -> list[Ticket]:
        """A slot of every cap, or none: the first cap that is full is refused with ``refuse``.

        One read of every cap's live slots, then every cap's slot taken in one transaction: a refusal rolls back
        the slots taken before it, so nothing is left to give back (an upload's two caps cost three
        transactions with the release, where one per cap and step cost six)."""
        if self._unreleased:
            self._retry_releases()
        now = time.time()
        live = self._live([(cap.pool, cap.scope) for cap in caps], now)
        for cap in caps:
            if len(live[cap.pool, cap.scope]) >= cap.limit:
                raise refuse(cap.full, cap.limit)
        held: list[Ticket] = []
        with self.db.session() as session:
            for cap in caps:
                live_here = live[cap.pool, cap.scope]
                ticket = self._first_free(session.connection(), cap.pool, cap.scope, cap.limit, live_here, now)
                if ticket is None:  # racers took the free ones first
                    raise refuse(cap.full, cap.limit)
                held.append(ticket)
        self._hold(held)
        return held

    def release(self, tickets: Sequence[Ticket]) -> None:
        """Give back every slot; those that cannot be given back now are retried, else lapse within the TTL."""
        if not tickets:
            return
        try:
            self._delete_rows(tickets)
        except Exception as exc:  # no longer held (``_delete_rows`` let them go first), but still to give back
            with self._lock:
                self._unreleased.extend(tickets)
            log.warning("releasing %d slot(s) failed (retried, else they lapse): %s", len(tickets), exc)

    def _retry_releases(self) -> None:
        """Give back the slots a database outage kept: else they would refuse their callers (429) until they
        lapse, although nobody holds them."""
        with self._lock:
            pending, self._unreleased = self._unreleased, []
        if not pending:  # another thread retried them first
            return
        try:
            self._delete_rows(pending)
        except Exception:
            with self._lock:
                self._unreleased.extend(pending)

    @contextmanager
    def slots(self, caps: Sequence[Cap], refuse: Refusal) -> Iterator[None]:
        """Hold a slot of every cap for the block."""
        tickets = self.acquire(caps, refuse)
        try:
            yield
        finally:
            self.release(tickets)


_LEASES = SlotLease.__table__  # type: ignore[attr-defined]
_LIVE = select(_LEASES.c.pool, _LEASES.c.scope, _LEASES.c.slot).where(
    _LEASES.c.pool.in_(bindparam("pools", expanding=True)),
    _LEASES.c.scope.in_(bindparam("scopes", expanding=True)),
    _LEASES.c.expires_at > bindparam("now"),
)
_GIVE_BACK = delete(_LEASES).where(
    _LEASES.c.pool.in_(bindparam("pools", expanding=True)),
    _LEASES.c.scope.in_(bindparam("scopes", expanding=True)),
    _LEASES.c.ticket.in_(bindparam("tickets", expanding=True)),
)


@cache
def _take_statement(dialect: str) -> Insert:
    """Insert slot (pool, scope, slot), or take it over only if its lease expired, returning the ticket it
    holds now: built once per dialect, since building a statement costs more than the database takes to run it."""
    row: dict[str, Any] = {name: bindparam(name) for name in ("holder", "ticket", "expires_at")}
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(_LEASES)
    statement: Insert = (
        insert.values(pool=bindparam("pool"), scope=bindparam("scope"), slot=bindparam("slot"), **row)
        .on_conflict_do_update(
            index_elements=["pool", "scope", "slot"], set_=row, where=_LEASES.c.expires_at <= bindparam("now")
        )
        .returning(_LEASES.c.ticket)
    )
    return statement


_BY_DB: weakref.WeakKeyDictionary[Database, SlotLeases] = weakref.WeakKeyDictionary()
_BY_DB_LOCK = threading.Lock()


def shared_by_processes(db: Database) -> bool:
    """Whether other service processes may share this database: PostgreSQL. SQLite is served by one process
    (``--workers`` > 1 is refused on it), whose own slots hold every cap, so its caps cost no database rows."""
    return not db.url.startswith("sqlite")


def slot_leases(db: Database) -> SlotLeases:
    """This process's slot leases in ``db`` (one holder per process and database, so one renewal round)."""
    with _BY_DB_LOCK:
        leases = _BY_DB.get(db)
        if leases is None:
            leases = _BY_DB[db] = SlotLeases(db)
        return leases


@contextmanager
def stamping_slot(db: Database, pdf: PdfSettings, org_id: str) -> Iterator[None]:
    """The organisation's stamping slot among every process's (``EVAULT_PDF_STAMP_PER_ORG``), else 503."""
    if not shared_by_processes(db):  # the stamper's own per-organisation slots are the whole service's
        yield
        return
    with slot_leases(db).slots([Cap("stamp-org", org_id, pdf.stamp_per_org, "key")], busy("Copy.Busy")):
        yield
