"""Evidence work (compliance checks, certificates, audit trails, receipts, packages) in a bounded pool of worker
processes, per organisation, on a deadline.

A check reads the ledger and live storage for one envelope, so its cost grows with what the envelope holds, and
its CPU is Python's: run on a thread of the service, it held the GIL against every other tenant's requests (on
a quiet machine another tenant's reads went ×3.2–3.5 slower while one organisation kept one check at work;
docs/isolation.md). So each job runs in a worker process (:mod:`vault.worker_pool`, forked from a forkserver
that has imported the evidence code, niced like the PDF workers), which joins the service's database and
store once (:func:`~vault.runtime.open_runtime` with ``join``: nothing created, started or migrated) and
serves job after job. A job is a module-level function and plain arguments (:class:`Call`), and answers an
:class:`Answer` or raises the service's own error, both pickled back.

At most ``EVAULT_EVIDENCE_CONCURRENCY`` jobs at once in this process and ``EVAULT_EVIDENCE_PER_ORG`` for one
organisation (else 503 ``Evidence.Busy`` with ``Retry-After``, at once, never queued). Each job gets a
:class:`~compliance.sources.Deadline` of ``EVAULT_EVIDENCE_DEADLINE_SECONDS``: the caller gets 503
``Evidence.Timeout`` when it passes, and the job's worker is killed then, when the client disconnects, or
when the service stops (so a stop never waits for evidence). A job's slot is held until its worker has
answered or been killed. A worker that dies answers 503 ``Evidence.WorkerFailed``.

A job whose heavy part already runs in a process of its own (the certified copy: its stamping is the PDF
workers') runs on a thread here instead (:meth:`EvidenceWork.run`), under the same caps and deadline; the
checks it makes look at the deadline between steps, so a cancelled one ends within one step.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, TypeVar

from compliance.errors import Unavailable
from compliance.sources import Deadline
from storage.embedded_s3 import S3Endpoint
from storage.settings import EvidenceWorkSettings, Settings
from vault.slots import Full, Slots
from vault.worker_pool import Cancelled, Job, PoolConfig, StampFailure, pool_for, receive_document, send_document

if TYPE_CHECKING:
    from vault.runtime import Runtime

log = logging.getLogger("evault.evidence")
T = TypeVar("T")
RETRY_AFTER_SECONDS = 2
WORKER_GRACE_SECONDS = 5.0  # past the deadline, before a worker's own wall clock would end it
# what the evidence workers' forkserver imports before forking them, in this order
PRELOAD = ("vault.metrics.in_memory", "vault.evidence_jobs")


@dataclass(frozen=True)
class Answer:
    """What a job hands back: a JSON document (dict or list) or bytes, with its media type and headers."""

    content: Any
    media_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    """One job for a worker: ``function(runtime, deadline, *args)``, a module-level function (it is pickled by
    name), answering an :class:`Answer`."""

    function: Callable[..., Answer]
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Joining:
    """What a worker needs to open the service's runtime: its settings, the store it reached, and the signing
    key's generation it signs with."""

    settings: Settings
    endpoint: S3Endpoint
    vkey: str


# --- in a worker --------------------------------------------------------------------------------------------

_joined: tuple[Joining, Runtime] | None = None


def _runtime_for(joining: Joining) -> Runtime:
    """The worker's runtime, opened on its first job (and again if a job comes from other settings)."""
    global _joined
    if _joined is None or _joined[0] != joining:
        from vault.runtime import open_runtime  # the runtime owns this module's pool: imported here, in a worker

        _joined = (joining, open_runtime(joining.settings, join=joining))
    return _joined[1]


def _serve_call(conn: Connection, joining: Joining, call: Call, seconds: float) -> None:
    """Run ``call`` and send ``("ok", answer)`` or ``("error", exception)``; an exception that cannot cross the
    pipe goes as a :class:`RuntimeError` naming it (it is still an unexpected failure, logged by the service).
    An answer of bytes (a package, a PDF) is sent as ``("document", answer without them)`` and the bytes
    after it, by :func:`~vault.worker_pool.send_document`: a package of many documents is many MiB, and read
    from the pipe each MiB cost the service's thread about a millisecond."""
    try:
        outcome: tuple[str, Any] = ("ok", call.function(_runtime_for(joining), Deadline(seconds), *call.args))
    except Exception as exc:
        outcome = ("error", exc)
    kind, value = outcome
    if kind == "ok" and isinstance(value.content, bytes):
        conn.send(("document", replace(value, content=b"")))
        send_document(conn, value.content)
        return
    try:
        conn.send(outcome)
    except (pickle.PicklingError, TypeError, AttributeError):
        conn.send(("error", RuntimeError(f"{type(value).__name__}: {value}")))


def _nothing(_runtime: Runtime, _deadline: Deadline) -> Answer:
    """The call of :meth:`EvidenceWork.warm`: its worker opens the vault for it, which is the point."""
    return Answer(None)


def _read_answer(conn: Connection, _deadline: float) -> Answer:
    kind, value = conn.recv()
    if kind == "error":
        raise value
    answer: Answer = replace(value, content=receive_document(conn)) if kind == "document" else value
    return answer


def _worker_failed(failure: StampFailure) -> Unavailable:
    log.error("an evidence worker failed: %s", failure)
    return Unavailable(
        "Evidence.WorkerFailed",
        f"the evidence process failed ({failure.detail}); retry shortly",
        retry_after_seconds=RETRY_AFTER_SECONDS,
    )


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

    def __init__(self, settings: EvidenceWorkSettings, nice: int = 0) -> None:
        self.settings = settings
        self._pool = PoolConfig(
            settings.memory_bytes, nice, settings.concurrency, max_rss_bytes=settings.memory_bytes // 2, preload=PRELOAD
        )
        self._slots = Slots(settings.concurrency, settings.per_org)
        self._lock = threading.Lock()
        self._jobs: dict[Deadline, threading.Thread] = {}

    def _job(self, joining: Joining, call: Call, cancelled: Callable[[], bool] | None = None) -> Job[Answer]:
        """``call`` as a worker's job, within the evidence deadline."""
        seconds = float(self.settings.deadline_seconds)
        return Job(
            _serve_call,
            (joining, call, seconds),
            int(seconds) + 1,
            seconds + WORKER_GRACE_SECONDS,  # a request's own deadline (run) passes first, and kills the worker
            _read_answer,
            cancelled=cancelled,
        )

    def warm(self, joining: Joining) -> None:
        """Start every worker and open the vault in each (the forkserver's imports, then a join per worker) before
        the first compliance, certificate or audit request needs one. With one started ahead, a second
        organisation's first request while it was busy waited for a worker's start and join, past a 3 s deadline
        on a loaded machine. The jobs run at once, so each takes a worker of its own."""
        pool, job = pool_for(self._pool), self._job(joining, Call(_nothing, ()))
        with ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="evidence-warm") as threads:
            started = [threads.submit(pool.run, job, None, _refuse) for _ in range(self.settings.concurrency)]
        for each in started:
            each.result()  # the first failure is the caller's to log

    async def run_apart(self, org_id: str, joining: Joining, call: Call, gone: Callable[[], Awaitable[None]]) -> Answer:
        """``call``'s answer, computed in a worker process; ``gone`` returns when the client has disconnected."""

        def in_worker(deadline: Deadline) -> Answer:
            job = self._job(joining, call, cancelled=lambda: deadline.cancelled)
            try:
                return pool_for(self._pool).run(job, org_id, _refuse)
            except Cancelled:
                deadline.check()  # raises Evidence.Timeout: nobody waits for the answer any more
                raise
            except StampFailure as failure:
                raise _worker_failed(failure) from None

        return await self.run(org_id, in_worker, gone)

    async def run(self, org_id: str, job: Callable[[Deadline], T], gone: Callable[[], Awaitable[None]]) -> T:
        """``job``'s answer, computed on a thread of this pool; ``gone`` returns when the client has
        disconnected."""
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
