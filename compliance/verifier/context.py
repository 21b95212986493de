"""What every pass of a run shares: the sources, the fixed scope, where findings and progress go, and limits.

Findings are collected, never stopped at (Tessera's fsck): a pass reports and goes on. Each unit of work
(objects, copies or the log of one organisation) reports a durable position, so an interrupted run resumes
after what it already checked.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from compliance.sources import Sources
from compliance.verifier.envelope_state import DEFAULT_CACHE
from compliance.verifier.findings import Finding
from compliance.verifier.scope import Scope


class Interrupted(RuntimeError):
    """The run stopped early (the test hook, or a signal); its progress is durable and it can be resumed."""


@dataclass(frozen=True)
class UnitState:
    done: bool = False
    position: str | None = None  # every key <= position is checked (objects and copies units)
    checked: int = 0


class RunLog(Protocol):
    """Where a run's findings and per-unit progress go (the database for a recorded run, memory otherwise)."""

    def unit_state(self, unit: str) -> UnitState: ...

    def save_position(self, unit: str, position: str | None, checked: int, *, done: bool = False) -> None: ...

    def add_finding(self, finding: Finding) -> None: ...


class MemoryRunLog:
    """A run that records nothing: for library callers and tests that only want the findings."""

    def __init__(self) -> None:
        self.findings: dict[str, Finding] = {}
        self.units: dict[str, UnitState] = {}
        self._lock = threading.Lock()

    def unit_state(self, unit: str) -> UnitState:
        return self.units.get(unit, UnitState())

    def save_position(self, unit: str, position: str | None, checked: int, *, done: bool = False) -> None:
        self.units[unit] = UnitState(done, position, checked)

    def add_finding(self, finding: Finding) -> None:
        with self._lock:
            self.findings.setdefault(finding.fingerprint, finding)


@dataclass
class Tuning:
    """How a run reads, retries and saves: the caller's options are these, and every check reads them here."""

    concurrency: int = 8
    claim_grace: timedelta = timedelta(minutes=15)
    retention: timedelta | None = None  # checkpoints' expected retention; None: only the lock mode is checked
    read_attempts: int = 3  # a read failing with a server error is tried this often, then reported
    retry_pause: float = 0.3
    stop_after: int | None = None  # test hook: raise Interrupted after this many objects (this process)
    stop_after_entries: int | None = None  # test hook: the same after this many log entries
    save_seconds: float = 2.0  # durable positions are saved at most this often
    log_save_every: int = 1 << 14  # a log's position is saved at multiples of this many entries (a power of 2)
    state_cache: int = (
        DEFAULT_CACHE  # envelopes per table of a log audit's state kept in memory (the rest spills to SQLite)
    )
    scratch_dir: str | None = None  # where that state's temporary SQLite file goes (None: the system's temp dir)


@dataclass
class Context:
    sources: Sources
    scope: Scope
    runs: RunLog
    tuning: Tuning = field(default_factory=Tuning)
    stopping: threading.Event = field(default_factory=threading.Event)  # another pass of the run failed
    on_progress: Callable[[str, int, int], None] = lambda _what, _items, _bytes: None
    counts: Counter[str] = field(default_factory=Counter)
    done_here: int = 0
    entries_here: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def report(self, finding: Finding) -> None:
        with self._lock:
            self.counts[f"finding:{finding.code}"] += 1
        self.runs.add_finding(finding)

    def count(self, what: str, items: int = 1, nbytes: int = 0) -> None:
        with self._lock:
            self.counts[what] += items
            self.counts[f"{what}_bytes"] += nbytes
        self.on_progress(what, items, nbytes)

    def step(self) -> None:
        """One object checked in this process; the test hook interrupts the run here."""
        self.done_here += 1
        if self.tuning.stop_after is not None and self.done_here >= self.tuning.stop_after:
            raise Interrupted(f"stopped after {self.done_here} objects (test hook)")
        if self.stopping.is_set():
            raise Interrupted("another pass of this run stopped")

    def log_step(self) -> None:
        """One log entry audited in this process; the test hook (or a failed pass) interrupts the audit here."""
        self.entries_here += 1
        if self.tuning.stop_after_entries is not None and self.entries_here >= self.tuning.stop_after_entries:
            raise Interrupted(f"stopped after {self.entries_here} log entries (test hook)")
        if self.entries_here % 1024 == 0 and self.stopping.is_set():
            raise Interrupted("another pass of this run stopped")
