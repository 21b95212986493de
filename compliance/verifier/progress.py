"""Progress: a bar with rate and ETA on a terminal (rich), plain log lines otherwise (a cron job's log)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

log = logging.getLogger("evault.verifier")


class Display(Protocol):
    def __call__(self, what: str, items: int, nbytes: int) -> None: ...


class LogLines:
    """One INFO line every ``every`` seconds: objects, bytes, rate."""

    def __init__(self, total: int, every: float = 10.0) -> None:
        self.total, self.every = total, every
        self.items = self.nbytes = 0
        self.start = self.last = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, what: str, items: int, nbytes: int) -> None:
        with self._lock:
            if what in ("objects", "copies"):
                self.items += items
            self.nbytes += nbytes
            now = time.monotonic()
            if now - self.last < self.every:
                return
            self.last = now
        elapsed = max(now - self.start, 1e-9)
        log.info(
            "verify: %d/%d objects, %.1f MB, %.1f objects/s, %.1f MB/s",
            self.items,
            self.total,
            self.nbytes / 1e6,
            self.items / elapsed,
            self.nbytes / 1e6 / elapsed,
        )


@contextmanager
def progress_display(total: int) -> Iterator[Display]:
    if not sys.stderr.isatty():
        yield LogLines(total)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]verify"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} obj/s {task.fields[mbps]:.1f} MB/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("objects", total=total or None, rate=0.0, mbps=0.0)
        start = time.monotonic()
        done = [0, 0]
        lock = threading.Lock()

        def update(what: str, items: int, nbytes: int) -> None:
            with lock:
                if what in ("objects", "copies"):
                    done[0] += items
                done[1] += nbytes
                elapsed = max(time.monotonic() - start, 1e-9)
                advance = items if what in ("objects", "copies") else 0
                bar.update(task, advance=advance, rate=done[0] / elapsed, mbps=done[1] / 1e6 / elapsed)

        yield update
