"""A pool of long-lived worker processes for the stamper's jobs (an upload's vetting, a copy's stamping).

A hostile document must meet a memory limit, a CPU budget and a wall clock, out of the service's process. A
fresh child per job gave that but cost a fork, a cold (copied-on-write) heap and a reap per upload: vault-in
spent x1.44-1.52 the CPU per object it had spent with the vetting in the API. Here each worker is forked once
from the stamper's clean forkserver (never from the threaded service) and serves job after job:

- ``RLIMIT_AS`` is set once, when the worker starts (every job of a pool shares its memory limit);
- each job gets its own CPU budget: the worker raises its soft ``RLIMIT_CPU`` to the CPU it has used so far
  plus the budget, so the kernel kills it (``SIGXCPU``) when one job's CPU passes the budget;
- the parent kills the worker when a job's wall clock passes its deadline. A job that had less than a quarter of
  a core on average by then was starved (a niced worker on a busy host), not slow: it is refused with the caller's
  503 and retry hint, never blamed on the document;
- a worker that dies or is killed, or whose job failed any other way than a refusal of the document, is
  replaced at once, and the job answers with the stamper's failure kinds (:class:`StampFailure`);
- a worker is retired after ``max_jobs`` jobs, or when its resident memory after a job is past ``max_rss_bytes``
  (so one large document cannot leave a bloated worker behind), and replaced;
- ``size`` workers at most, started when first needed, taken by jobs through a fair share between
  organisations (:class:`~vault.slots.Slots`): an organisation alone may use every worker, beside others its
  share; a job that finds no worker within its wall clock is refused with the caller's retry hint.
- each pool names the modules its workers run (``preload``), and pools with different modules fork from
  different forkservers: a stamper never carries the evidence workers' database and storage libraries in its
  address space (its ``RLIMIT_AS``), nor they the stamper's;
- a job may be cancelled while it runs (its caller is gone): its worker is killed and replaced;
- a document a job reads goes to its worker, and a document the worker makes comes back, as an anonymous
  memory file whose descriptor crosses the pipe (:class:`Handoff`, :func:`send_document`), not through the
  pipe itself;
- :meth:`WorkerPool.warm` starts a pool's forkserver and a worker before any request needs them.

:func:`close_pools` (the runtime's close, on SIGTERM) kills every worker at once: a job in flight is refused
with the caller's 503, so shutting down never waits for a document.
"""

from __future__ import annotations

import gc
import io
import math
import multiprocessing
import os
import resource
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import forkserver, popen_forkserver, reduction, spawn, util
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerProcess, set_spawning_popen
from typing import Any, Generic, Literal, TypeVar

from compliance.errors import EvaultError
from vault.allocator import keep_buffers_between_jobs
from vault.slots import Refusal, Slots

CTX = multiprocessing.get_context("forkserver")


class _Popen(popen_forkserver.Popen):
    """The forkserver's launch, minus the parent's main module.

    multiprocessing has each child re-create the parent's ``__main__`` (a script is run again, a ``-m`` module
    re-executed) and the forkserver's preloading of ``__main__`` never happens (Python 3.11 asks
    ``get_preparation_data`` for a key it does not give), so every child imported the whole service afresh:
    over a second of CPU each here. The workers run only the stamper's functions on plain arguments, so they
    need none of it: the preparation data goes without it, and a worker starts in a few milliseconds."""

    def _launch(self, process_obj: Any) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)
        prep_data.pop("init_main_from_name", None)
        prep_data.pop("init_main_from_path", None)
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)
        server = _forkserver_for(process_obj.preload)
        self.sentinel, w = server.connect_to_new_process(self._fds)  # type: ignore[attr-defined]  # untyped
        parent_w = os.dup(w)  # the child's sentinel of its parent, as the base class keeps it
        close_fds = util.close_fds  # type: ignore[attr-defined]  # untyped in typeshed
        self.finalizer = util.Finalize(self, close_fds, (parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _Child(ForkServerProcess):
    preload: tuple[str, ...] = ()  # the modules of the forkserver it forks from

    @staticmethod
    def _Popen(process_obj: Any) -> _Popen:
        return _Popen(process_obj)


_SERVERS: dict[tuple[str, ...], forkserver.ForkServer] = {}
_SERVERS_LOCK = threading.Lock()


def _forkserver_for(preload: tuple[str, ...]) -> forkserver.ForkServer:
    """One forkserver per set of preloaded modules, started when its first worker is."""
    with _SERVERS_LOCK:
        server = _SERVERS.get(preload)
        if server is None:
            server = _SERVERS[preload] = forkserver.ForkServer()
            server.set_forkserver_preload(list(preload))
        return server


def forkserver_pid(preload: tuple[str, ...]) -> int | None:
    """The process id of the forkserver for ``preload``, once started (the parent of its pools' workers)."""
    with _SERVERS_LOCK:
        server = _SERVERS.get(preload)
    return None if server is None else server._forkserver_pid  # type: ignore[attr-defined]  # private, untyped


Kind = Literal["failed", "timeout", "memory", "unmarked"]
T = TypeVar("T")


class StampFailure(Exception):
    """The worker could not do the job: ``kind`` says whether it failed, ran out of time, or out of memory."""

    def __init__(self, kind: Kind, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def died(exitcode: int | None) -> StampFailure:
    """What a worker's death means for its job."""
    if exitcode in (-signal.SIGXCPU, -signal.SIGKILL):
        return StampFailure("timeout", f"worker killed by signal {-(exitcode or 0)}")
    if exitcode == -signal.SIGABRT:  # pdfium aborts, rather than raise, when RLIMIT_AS refuses it memory
        return StampFailure("memory", "worker aborted: pdfium ran out of its address space")
    return StampFailure("failed", f"worker exited with {exitcode}")


@dataclass(frozen=True)
class PoolConfig:
    """What the workers of one pool share: their memory limit and niceness, how many, when to retire one, and
    the modules their forkserver imports before forking them."""

    memory_bytes: int
    nice: int = 0
    size: int = 2
    max_jobs: int = 200
    max_rss_bytes: int = 512 * 1024 * 1024
    preload: tuple[str, ...] = ()


@dataclass(frozen=True)
class Job(Generic[T]):
    """``target(conn, *args)`` run in a worker, which sends its answer on ``conn``; ``read(conn, deadline)``
    takes the answer in the parent (raising :class:`StampFailure` or ``InvalidInput`` when it says so).
    ``cancelled``, when given, is asked while the job runs: once it says so, the worker is killed and the job
    raises :class:`Cancelled`."""

    target: Callable[..., None]
    args: tuple[Any, ...]
    cpu_seconds: int
    timeout_seconds: float
    read: Callable[[Connection, float], T]
    cancelled: Callable[[], bool] | None = None


class Cancelled(Exception):
    """The job's caller stopped waiting; its worker was killed."""


CANCEL_POLL_SECONDS = 0.05  # how soon a cancelled job's worker is killed
WARM_SECONDS = 60.0  # a forkserver's imports and a worker's start, on a loaded machine


HANDOFF_MIN_BYTES = 64 * 1024  # smaller documents are pickled with the job: a memory file would cost more


@dataclass(frozen=True)
class Handoff:
    """A job's argument whose bytes reach the worker as an anonymous memory file (``memfd``): written once in
    the service, its descriptor passed over the pipe (``SCM_RIGHTS``), and read once by the worker, which sees
    plain ``bytes``. Pickled into the pipe, a 1 MiB upload cost the service ~0.85 ms of CPU (the pickle's
    copy is a fresh mapping there, vault/allocator.py, then sixteen 64 KiB writes, each waiting for the
    worker) and the worker ~0.4 ms to read and unpickle; as a memory file ~0.47 ms and ~0.2 ms (a throwaway
    diagnostic, 800 alternating hand-offs, docs/benchmarks.md). Documents under ``HANDOFF_MIN_BYTES``, or a
    kernel without ``memfd_create``, go in the pipe as before."""

    data: bytes


@dataclass(frozen=True)
class _Sent:
    """In the pipe, in place of a document (a job's :class:`Handoff`, a worker's :func:`send_document`): the
    memory file's descriptor follows (after the job, in the order of its args)."""

    size: int


def _memory_file(data: bytes) -> int | None:
    """A memory file holding ``data`` (its descriptor, the caller's to close), or None where the pipe is the
    better way: under ``HANDOFF_MIN_BYTES``, or no memory file to be had."""
    if len(data) < HANDOFF_MIN_BYTES:
        return None
    try:
        fd = os.memfd_create("evault-job", os.MFD_CLOEXEC)
    except (AttributeError, OSError):  # no memfd here, or none to spare: the pipe still works
        return None
    try:
        view, written = memoryview(data), 0
        while written < len(view):
            written += os.write(fd, view[written:])
    except OSError:
        os.close(fd)
        return None
    return fd


def _read_sent(conn: Connection, sent: _Sent) -> bytes:
    """The bytes of the memory file whose descriptor comes next on ``conn`` (closed once read)."""
    try:
        fd = reduction.recv_handle(conn)
    except RuntimeError as exc:  # the other end closed between the two messages: as if before the first
        raise EOFError(str(exc)) from exc
    try:
        data = os.pread(fd, sent.size, 0)
    finally:
        os.close(fd)
    if len(data) != sent.size:
        raise OSError(f"a memory file held {len(data)} of {sent.size} bytes")
    return data


def _outgoing(args: tuple[Any, ...]) -> tuple[tuple[Any, ...], list[int]]:
    """The job's args as the pipe carries them, and the memory files to pass after them (the caller closes)."""
    sent: list[Any] = []
    files: list[int] = []
    for arg in args:
        fd = _memory_file(arg.data) if isinstance(arg, Handoff) else None
        if fd is not None:
            files.append(fd)
            sent.append(_Sent(len(arg.data)))
        else:
            sent.append(arg.data if isinstance(arg, Handoff) else arg)
    return tuple(sent), files


def _send_job(conn: Connection, job: Job[Any]) -> None:
    args, files = _outgoing(job.args)
    try:
        conn.send((job.target, job.cpu_seconds, args))
        for fd in files:
            reduction.send_handle(conn, fd, 0)  # the destination pid is for Windows
    finally:
        for fd in files:
            os.close(fd)


def send_document(conn: Connection, data: bytes) -> None:
    """A worker's document for the service (a stamped copy), handed over as a job's :class:`Handoff` is: a
    memory file's descriptor, or in the pipe when small. The service reads it with :func:`receive_document`:
    an 8 MiB copy read from the pipe cost the service's thread ~8.8 ms of CPU."""
    fd = _memory_file(data)
    if fd is None:
        conn.send(data)
        return
    try:
        conn.send(_Sent(len(data)))
        reduction.send_handle(conn, fd, 0)
    finally:
        os.close(fd)


def receive_document(conn: Connection) -> bytes:
    """The document :func:`send_document` sent."""
    sent = conn.recv()
    return _read_sent(conn, sent) if isinstance(sent, _Sent) else bytes(sent)


# --- in the worker ------------------------------------------------------------------------------------------


def _warm_job(conn: Connection) -> None:
    """The job of :meth:`WorkerPool.warm`: nothing to do but answer."""
    conn.send(True)


def _incoming(conn: Connection, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The job's args with each memory file read into ``bytes`` (and closed)."""
    return tuple(_read_sent(conn, arg) if isinstance(arg, _Sent) else arg for arg in args)


_job_started_cpu = 0.0


def _cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def job_usage() -> tuple[int, float]:
    """In a worker, the current job's peak resident memory (bytes) and its CPU seconds so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, _cpu_used() - _job_started_cpu


def _start_job(cpu_seconds: int) -> None:
    """The job's own CPU budget (the soft ``RLIMIT_CPU`` raised from what the worker has used) and its own
    peak-memory mark (``clear_refs`` resets the high-water mark that ``ru_maxrss`` reads)."""
    global _job_started_cpu
    _job_started_cpu = _cpu_used()
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(_job_started_cpu) + cpu_seconds
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def _serve(conn: Connection, memory_bytes: int, nice: int) -> None:
    """A worker's life: its limits, once, then one job after another until its pipe closes.

    The heap inherited from the forkserver is frozen, so the worker's garbage collections never walk (and
    copy) the forkserver's pages; freed buffers stay for the next job (``vault.allocator``)."""
    gc.freeze()
    keep_buffers_between_jobs()
    if nice:
        os.nice(nice)
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    while True:
        try:
            target, cpu_seconds, args = conn.recv()
        except EOFError:
            return
        _start_job(cpu_seconds)
        target(conn, *_incoming(conn, args))


# --- in the service -----------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Worker:
    process: _Child
    conn: Connection
    jobs: int = 0


def _rss_bytes(pid: int) -> int:
    """A worker's resident memory now (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cpu_seconds(pid: int | None) -> float:
    """A worker's CPU seconds so far (user and system, from /proc; 0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(eq=False)
class WorkerPool:
    """``config.size`` long-lived workers, started when first needed (see the module's docstring)."""

    config: PoolConfig
    _slots: Slots = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _idle: list[_Worker] = field(init=False, default_factory=list)
    _busy: set[_Worker] = field(init=False, default_factory=set)
    _closed: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        size = self.config.size
        self._slots = Slots(size, size, size)

    def pids(self) -> list[int]:
        """The workers alive now, idle or at work."""
        with self._lock:
            workers = [*self._idle, *self._busy]
        return [w.process.pid for w in workers if w.process.pid is not None and w.process.is_alive()]

    def run(self, job: Job[T], org: str | None, refuse: Refusal) -> T:
        """``job`` in a worker taken within ``org``'s share, waiting for one at most the job's wall clock."""
        with self._slots.slot(None, refuse, wait_seconds=job.timeout_seconds, org=org):
            worker = self._checkout(refuse)
            deadline = time.monotonic() + job.timeout_seconds
            started_cpu = _cpu_seconds(worker.process.pid)
            answered = False
            try:
                _send_job(worker.conn, job)
                if not _answered(worker.conn, deadline, job.cancelled):
                    if _cpu_seconds(worker.process.pid) - started_cpu < job.timeout_seconds / 4:
                        raise refuse("total", self.config.size)  # starved, not slow: ours to retry
                    raise StampFailure("timeout", f"no answer within {job.timeout_seconds:.0f} s")
                answered = True
                result = job.read(worker.conn, deadline)
            except (EOFError, OSError):
                self._retire(worker)
                if self._closed:
                    raise refuse("total", self.config.size) from None
                raise died(worker.process.exitcode) from None
            except EvaultError:
                if answered:  # the job's own answer (the document refused, an evidence 404): the worker is sound
                    self._checkin(worker)
                else:  # refused here while the worker still works on the job
                    self._retire(worker)
                raise
            except BaseException:
                self._retire(worker)
                raise
            self._checkin(worker)
            return result

    def warm(self, refuse: Refusal, timeout_seconds: float = WARM_SECONDS) -> None:
        """Start a worker now, and the forkserver it forks from, with a job that only answers: ``evault serve``
        does so before it serves (``Runtime.warm_workers``), so that no request waits for them."""
        self.run(Job(_warm_job, (), math.ceil(timeout_seconds), timeout_seconds, _read_warm), None, refuse)

    def _checkout(self, refuse: Refusal) -> _Worker:
        with self._lock:
            if self._closed:
                raise refuse("total", self.config.size)
            worker = self._idle.pop() if self._idle else None
        if worker is not None and not worker.process.is_alive():  # died idle (the OOM killer, an operator)
            _stop(worker)
            worker = None
        if worker is None:  # the slots hold at most ``size`` jobs, so a worker is idle or one may start
            worker = self._spawn()
        with self._lock:
            self._busy.add(worker)
        return worker

    def _spawn(self) -> _Worker:
        conn, child_end = CTX.Pipe()
        process = _Child(target=_serve, args=(child_end, self.config.memory_bytes, self.config.nice), daemon=True)
        process.preload = self.config.preload
        process.start()
        child_end.close()
        return _Worker(process, conn)

    def _checkin(self, worker: _Worker) -> None:
        worker.jobs += 1
        spent = worker.jobs >= self.config.max_jobs or _rss_bytes(worker.process.pid or 0) > self.config.max_rss_bytes
        if spent or self._closed:
            self._retire(worker)
            return
        with self._lock:
            self._busy.discard(worker)
            self._idle.append(worker)

    def _retire(self, worker: _Worker) -> None:
        """Kill ``worker`` (it is between jobs, or its job is lost) and start its replacement."""
        _stop(worker)
        with self._lock:
            self._busy.discard(worker)
            if self._closed:
                return
        replacement = self._spawn()
        with self._lock:
            if not self._closed:
                self._idle.append(replacement)
                return
        _stop(replacement)

    def close(self) -> None:
        """Kill every worker now: a job in flight is refused with its caller's retry hint (its thread, woken by
        the end of the pipe, reaps its worker)."""
        with self._lock:
            self._closed = True
            idle, busy = list(self._idle), list(self._busy)
            self._idle.clear()
        for worker in idle:
            _stop(worker)
        for worker in busy:
            if worker.process.is_alive():
                worker.process.kill()


def _read_warm(conn: Connection, _deadline: float) -> None:
    conn.recv()


def _answered(conn: Connection, deadline: float, cancelled: Callable[[], bool] | None) -> bool:
    """Whether the worker answered before ``deadline``; raises :class:`Cancelled` once ``cancelled`` says so."""
    if cancelled is None:
        return conn.poll(max(0.0, deadline - time.monotonic()))
    while not conn.poll(min(CANCEL_POLL_SECONDS, max(0.0, deadline - time.monotonic()))):
        if cancelled():
            raise Cancelled()
        if time.monotonic() >= deadline:
            return False
    return True


def _stop(worker: _Worker) -> None:
    if worker.process.is_alive():
        worker.process.kill()
    worker.process.join()
    worker.conn.close()


_POOLS: dict[PoolConfig, WorkerPool] = {}
_POOLS_LOCK = threading.Lock()


def pool_for(config: PoolConfig) -> WorkerPool:
    """This process's pool for ``config`` (one per configuration, shared by every request)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(config)
        if pool is None:
            pool = _POOLS[config] = WorkerPool(config)
        return pool


def close_pools() -> None:
    """Stop every pool of this process (the service is stopping); a later job starts a new pool."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()
