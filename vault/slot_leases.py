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

from sqlalchemy import delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select

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
        now = time.time() if now is None else now
        with self.db.read_session() as session:
            query = select(SlotLease.slot).where(
                SlotLease.pool == pool, SlotLease.scope == scope, col(SlotLease.expires_at) > now
            )
            return set(session.exec(query))

    def _take_slot(self, pool: str, scope: str, slot: int, now: float) -> Ticket | None:
        """Slot ``slot``, if it is free or its lease expired: one conditional upsert."""
        ticket = secrets.token_hex(16)
        dialect = postgresql if self.db.url.startswith("postgresql") else sqlite
        table = SlotLease.__table__  # type: ignore[attr-defined]
        row = {"holder": self.holder, "ticket": ticket, "expires_at": now + self.ttl}
        statement = (
            dialect.insert(table)
            .values(pool=pool, scope=scope, slot=slot, **row)
            .on_conflict_do_update(index_elements=["pool", "scope", "slot"], set_=row, where=table.c.expires_at <= now)
            .returning(table.c.ticket)
        )
        with self.db.session() as session:
            taken = session.connection().execute(statement).scalar()
        return Ticket(pool, scope, slot, ticket) if taken == ticket else None

    def take(self, pool: str, scope: str, cap: int, now: float | None = None) -> Ticket | None:
        """A slot of ``pool`` for ``scope`` while fewer than ``cap`` are held; None when all are."""
        now = time.time() if now is None else now
        live = self.live(pool, scope, now)
        if len(live) >= cap:
            return None
        for slot in range(cap):
            if slot not in live and (ticket := self._take_slot(pool, scope, slot, now)) is not None:
                self._hold(ticket)
                return ticket
        return None  # racers took the free ones first

    def give_back(self, ticket: Ticket) -> None:
        """Release the slot (a lease this holder lost meanwhile is the new holder's, and stays)."""
        with self._lock:
            self._held.discard(ticket)
        with self.db.session() as session:
            session.execute(
                delete(SlotLease).where(
                    col(SlotLease.pool) == ticket.pool,
                    col(SlotLease.scope) == ticket.scope,
                    col(SlotLease.slot) == ticket.slot,
                    col(SlotLease.ticket) == ticket.ticket,
                )
            )

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

    def _hold(self, ticket: Ticket) -> None:
        with self._lock:
            self._held.add(ticket)
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
        """A slot of every cap, or none: the first cap that is full is refused with ``refuse``."""
        if self._unreleased:
            self._retry_releases()
        held: list[Ticket] = []
        try:
            for cap in caps:
                ticket = self.take(cap.pool, cap.scope, cap.limit)
                if ticket is None:
                    raise refuse(cap.full, cap.limit)
                held.append(ticket)
        except BaseException:
            self.release(held)
            raise
        return held

    def release(self, tickets: Sequence[Ticket]) -> None:
        """Give back every slot; one that cannot be given back now lapses within the TTL."""
        for ticket in tickets:
            try:
                self.give_back(ticket)
            except Exception as exc:
                with self._lock:
                    self._held.discard(ticket)
                    self._unreleased.append(ticket)
                log.warning("releasing slot %s/%s failed (retried, else it lapses): %s", ticket.pool, ticket.slot, exc)

    def _retry_releases(self) -> None:
        """Give back the slots a database outage kept: else they would refuse their callers (429) until they
        lapse, although nobody holds them."""
        with self._lock:
            pending, self._unreleased = self._unreleased, []
        for ticket in pending:
            try:
                self.give_back(ticket)
            except Exception:
                with self._lock:
                    self._unreleased.append(ticket)

    @contextmanager
    def slots(self, caps: Sequence[Cap], refuse: Refusal) -> Iterator[None]:
        """Hold a slot of every cap for the block."""
        tickets = self.acquire(caps, refuse)
        try:
            yield
        finally:
            self.release(tickets)


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
