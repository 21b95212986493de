"""Evidence work (compliance checks, certificates, audit trails) in a bounded pool, per organisation, on a deadline.

A check reads the ledger and live storage for one envelope, so its cost grows with what the envelope holds. It
runs on a thread of this pool, never on the threads every other route shares: at most
``EVAULT_EVIDENCE_CONCURRENCY`` at once in this process and ``EVAULT_EVIDENCE_PER_ORG`` for one organisation
(else 503 ``Evidence.Busy`` with ``Retry-After``, at once, never queued). Each job gets a
:class:`~compliance.sources.Deadline` of ``EVAULT_EVIDENCE_DEADLINE_SECONDS``: the caller gets 503
``Evidence.Timeout`` when it passes, and the job is cancelled then, when the client disconnects, or when the
service stops; the checks look at the deadline between steps, so a cancelled job ends within one step (one
storage request or query). A job's slot is held until the job has really ended, so abandoned work still counts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from contextlib import ExitStack
from typing import Any, TypeVar

from compliance.errors import Unavailable
from compliance.sources import Deadline
from storage.settings import EvidenceWorkSettings
from vault.slots import Full, Slots

log = logging.getLogger("evault.evidence")
T = TypeVar("T")
RETRY_AFTER_SECONDS = 2


def _refuse(full: Full, limit: int) -> Unavailable:
    org_full = full != "total"  # the organisation is the slot's key here
    setting = "EVAULT_EVIDENCE_PER_ORG" if org_full else "EVAULT_EVIDENCE_CONCURRENCY"
    whose = "your organisation has" if org_full else "the service has"
    return Unavailable(
        "Evidence.Busy",
        f"{whose} {limit} compliance, certificate or audit requests at work; retry shortly",
        limit=limit,
        setting=setting,
        retry_after_seconds=RETRY_AFTER_SECONDS,
    )


class EvidenceWork:
    """The pool: one per service process (see the module docstring)."""

    def __init__(self, settings: EvidenceWorkSettings) -> None:
        self.settings = settings
        self._slots = Slots(settings.concurrency, settings.per_org)
        self._lock = threading.Lock()
        self._jobs: dict[Deadline, threading.Thread] = {}

    async def run(self, org_id: str, job: Callable[[Deadline], T], gone: Callable[[], Awaitable[None]]) -> T:
        """``job``'s answer, computed on a pool thread; ``gone`` returns when the client has disconnected."""
        hold = ExitStack()
        hold.enter_context(self._slots.slot(org_id, _refuse))  # no wait: a full pool refuses at once
        deadline = Deadline(float(self.settings.deadline_seconds))
        future: Future[T] = Future()

        def work() -> None:
            outcome: tuple[bool, Any] | None = None
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        outcome = (True, job(deadline))
                    except BaseException as exc:
                        outcome = (False, exc)
            finally:
                with self._lock:
                    self._jobs.pop(deadline, None)
                hold.close()  # the job has ended: its slot is free before anyone hears its answer
            if outcome is not None:
                ok, value = outcome
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

        # A daemon thread: work that was cancelled but is still in one storage request never holds up the exit.
        thread = threading.Thread(target=work, daemon=True, name=f"evault-evidence-{org_id}")
        with self._lock:
            self._jobs[deadline] = thread
        try:
            thread.start()
        except BaseException:
            with self._lock:
                self._jobs.pop(deadline, None)
            hold.close()
            raise
        answer: asyncio.Future[Any] = asyncio.wrap_future(future)
        watcher: asyncio.Future[Any] = asyncio.ensure_future(gone())
        done: set[asyncio.Future[Any]] = set()
        try:
            done, _ = await asyncio.wait(
                {answer, watcher}, timeout=deadline.remaining(), return_when=asyncio.FIRST_COMPLETED
            )
        finally:  # also when this request is cancelled (the service stops): the job must not run on
            watcher.cancel()
            if answer not in done:
                deadline.cancel()
                answer.cancel()
        if answer in done:
            result: T = answer.result()
            return result
        if watcher in done:
            log.info("evidence request of %s cancelled: the client disconnected", org_id)
        deadline.check()  # raises Evidence.Timeout: the deadline passed, or nobody waits for the answer
        raise AssertionError("unreachable: a cancelled deadline always raises")

    def close(self, wait_seconds: float) -> None:
        """Cancel every job, then give them ``wait_seconds`` in all to reach their next step and end."""
        with self._lock:
            jobs = list(self._jobs.items())
        for deadline, _ in jobs:
            deadline.cancel()
        stop_at = time.monotonic() + wait_seconds
        for _, thread in jobs:
            thread.join(max(0.0, stop_at - time.monotonic()))
        if any(thread.is_alive() for _, thread in jobs):
            log.warning("evidence work still in a storage or database call at shutdown; not waiting for it")
