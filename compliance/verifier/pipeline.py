"""Checking objects concurrently while keeping a durable position in key order, with memory bounded.

Jobs are submitted in key order to a pool; at most ``2 × concurrency`` are in flight, so memory stays flat
whatever the vault's size. The position only moves past a key once it and every key before it are checked,
and is saved every few seconds: a resumed run starts after it and re-checks at most what was in flight.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from compliance.verifier.context import Context

SAVE_EVERY_SECONDS = 2.0


def run_ordered(ctx: Context, unit: str, jobs: Iterable[tuple[str, Callable[[], None]]]) -> None:
    state = ctx.runs.unit_state(unit)
    position, checked = state.position, state.checked
    last_save = time.monotonic()
    pending: deque[tuple[str, Future[None]]] = deque()

    def settle_oldest() -> None:
        nonlocal position, checked, last_save
        key, future = pending.popleft()
        future.result()  # a bug in a check stops the run; a fault in the vault is a finding, not an exception
        position, checked = key, checked + 1
        if time.monotonic() - last_save > SAVE_EVERY_SECONDS:
            ctx.runs.save_position(unit, position, checked)
            last_save = time.monotonic()
        ctx.step()

    pool = ThreadPoolExecutor(max(1, ctx.concurrency), thread_name_prefix="verify")
    finished = False
    try:
        for key, job in jobs:
            pending.append((key, pool.submit(job)))
            while pending and (pending[0][1].done() or len(pending) >= 2 * ctx.concurrency):
                settle_oldest()
        while pending:
            settle_oldest()
        finished = True
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True)
        ctx.runs.save_position(unit, position, checked, done=finished)
