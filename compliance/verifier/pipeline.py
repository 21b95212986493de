"""Checking objects concurrently while keeping a durable position in key order, with memory bounded.

Jobs are submitted in key order to a pool of ``concurrency`` threads, so at most that many objects are being
read (each holds one chunk at a time). Up to ``WINDOW_PER_THREAD × concurrency`` jobs wait behind the oldest
unfinished one: they hold only a key's metadata, and the window keeps every thread busy while one large object
is still being read at the head of the line. The position only moves past a key once it and every key before
it are checked, and is saved every few seconds: a resumed run starts after it and re-checks at most the window.
The store's listing is fetched ahead in a thread of its own (``prefetch``), so paging it never stalls the reads.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from compliance.verifier.context import Context

WINDOW_PER_THREAD = 16
PREFETCH = 2048  # listed keys held ahead of the reads

T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterable[T], limit: int = PREFETCH) -> Iterator[T]:
    """``items`` produced by a thread of their own, at most ``limit`` ahead; its errors are raised here."""
    ahead: queue.Queue[object] = queue.Queue(limit)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False  # the consumer went away

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            offer(exc)

    producer = threading.Thread(target=produce, name="verify-prefetch", daemon=True)
    producer.start()
    try:
        while True:
            item = ahead.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()


def run_ordered(ctx: Context, unit: str, jobs: Iterable[tuple[str, Callable[[], None]]]) -> None:
    state = ctx.runs.unit_state(unit)
    position, checked = state.position, state.checked
    last_save = time.monotonic()
    pending: deque[tuple[str, Future[None]]] = deque()
    window = WINDOW_PER_THREAD * max(1, ctx.tuning.concurrency)

    def settle_oldest() -> None:
        nonlocal position, checked, last_save
        key, future = pending.popleft()
        future.result()  # a bug in a check stops the run; a fault in the vault is a finding, not an exception
        position, checked = key, checked + 1
        if time.monotonic() - last_save >= ctx.tuning.save_seconds:
            ctx.runs.save_position(unit, position, checked)
            last_save = time.monotonic()
        ctx.step()

    pool = ThreadPoolExecutor(max(1, ctx.tuning.concurrency), thread_name_prefix="verify")
    finished = False
    try:
        for key, job in jobs:
            pending.append((key, pool.submit(job)))
            while pending and (pending[0][1].done() or len(pending) >= window):
                settle_oldest()
        while pending:
            settle_oldest()
        finished = True
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True)
        ctx.runs.save_position(unit, position, checked, done=finished)
