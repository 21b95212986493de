"""Stamping and vetting in a child process with a memory limit and a deadline, and a cap on how many run at once.

A copy is made from a document an outsider wrote, and an upload's vetting reads one. pypdf holds the whole
file (and whatever it decodes) in memory and has no time limit, so each stamping runs in a fresh process forked
from a clean forkserver (never from the threaded service process), with ``RLIMIT_AS`` and ``RLIMIT_CPU`` set in
the child, a wall-clock deadline in the parent, which kills it, and a lower scheduling priority
(``EVAULT_PDF_WORKER_NICE``) so that the service's own threads win the CPU. The child also checks the copy it
made against the original (:func:`~compliance.conditions.mark_check.check_copy`: pdfium reading a hostile file
belongs under the same limits), and a copy whose mark fails is never handed back. Failures come back as
:class:`StampFailure` with a kind the callers turn into their own stable codes. An upload's vetting
(:func:`run_vetting`) runs the same way, so its parsing and its rehearsal of a copy never hold the service's
memory, CPU or GIL.

The concurrency cap is in-process state (:class:`~vault.slots.Slots`): each service process has its own, so with
several workers the machine-wide bound is workers x ``EVAULT_PDF_STAMP_CONCURRENCY`` (it bounds this process's
stampers). An organisation's ``EVAULT_PDF_STAMP_PER_ORG`` also holds across processes: the callers take a
slot lease first (:func:`vault.slot_leases.stamping_slot`). A request that finds no free slot is refused with a
retry hint instead of queueing without bound.
"""

from __future__ import annotations

import gc
import io
import logging
import multiprocessing
import os
import resource
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import forkserver, popen_forkserver, reduction, spawn, util
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerProcess, set_spawning_popen
from pathlib import Path
from typing import Any, Literal, TypeVar

from compliance.conditions.copy_mark import CopyMark
from compliance.conditions.mark_check import MarkCheck, check_copy
from compliance.errors import EvaultError, InvalidInput, Unavailable
from storage.settings import PdfSettings
from vault.copy_stamp import stamp_copy
from vault.pdf_vetting import PdfFacts, vet_here
from vault.slots import Full, Refusal, Slots

log = logging.getLogger("evault.stamp")
_CTX = multiprocessing.get_context("forkserver")
_CTX.set_forkserver_preload(["vault.stamp_worker", "vault.worker_preload"])


class _Popen(popen_forkserver.Popen):
    """The forkserver's launch, minus the parent's main module.

    multiprocessing has each child re-create the parent's ``__main__`` (a script is run again, a ``-m`` module
    re-executed) and the forkserver's preloading of ``__main__`` never happens (Python 3.11 asks
    ``get_preparation_data`` for a key it does not give), so every child imported the whole service afresh:
    over a second of CPU each here. The children run only this module's functions on plain arguments, so they
    need none of it: the preparation data goes without it, and a child starts in a few milliseconds."""

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
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)  # type: ignore[attr-defined]  # untyped
        parent_w = os.dup(w)  # the child's sentinel of its parent, as the base class keeps it
        close_fds = util.close_fds  # type: ignore[attr-defined]  # untyped in typeshed
        self.finalizer = util.Finalize(self, close_fds, (parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _Child(ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> _Popen:
        return _Popen(process_obj)


Kind = Literal["failed", "timeout", "memory", "unmarked"]
T = TypeVar("T")


@dataclass(frozen=True)
class StampLimits:
    memory_bytes: int
    cpu_seconds: int
    timeout_seconds: float
    nice: int = 0  # added to the child's niceness: the service's threads first

    @classmethod
    def from_settings(cls, pdf: PdfSettings) -> StampLimits:
        return cls(pdf.stamp_memory_bytes, pdf.max_cpu_seconds, float(pdf.stamp_timeout_seconds), pdf.worker_nice)


@dataclass(frozen=True)
class StampOutcome:
    pdf: bytes
    check: MarkCheck  # the copy against the original, made in the child before the copy was handed back
    peak_rss_bytes: int  # the child's own high-water mark (ru_maxrss), measured inside it
    cpu_seconds: float


class CopyStampError(EvaultError):
    """A vetted document could not be stamped: a bug or a budget set too low, never the client's doing (500)."""

    category = "integrity"


_COPY_CODES = {
    "failed": "Copy.StampFailed",
    "timeout": "Copy.StampTimeout",
    "memory": "Copy.TooComplex",
    "unmarked": "Vault.CopyNotMarked",
}


class StampFailure(Exception):
    """The child could not stamp: ``kind`` says whether it failed, ran out of time, or out of memory."""

    def __init__(self, kind: Kind, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def _limit(limits: StampLimits) -> None:
    """In a child, first: its memory and CPU limits and its lower priority. The heap inherited from the
    forkserver is frozen, so the child's garbage collections never walk (and copy) the parent's pages."""
    gc.freeze()
    if limits.nice:
        os.nice(limits.nice)
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))


def _child(conn: Connection, source: bytes | Path, mark: CopyMark, limits: StampLimits, keep: bool) -> None:
    _limit(limits)
    try:
        original = source.read_bytes() if isinstance(source, Path) else source
        pdf = stamp_copy(original, mark)
        check = check_copy(original, pdf, mark.copy_id)
    except MemoryError:
        conn.send(("memory", f"address space limit of {limits.memory_bytes} bytes reached"))
        return
    except RecursionError as exc:
        conn.send(("failed", f"RecursionError: {exc}"))
        return
    except Exception as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"[:500]))
        return
    if not check.passed:
        conn.send(("unmarked", f"the copy's mark fails its check: {check.summary()}"[:500]))
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    conn.send(("ok", usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime, check))
    conn.send_bytes(pdf if keep else b"")


def _died(exitcode: int | None) -> StampFailure:
    if exitcode in (-signal.SIGXCPU, -signal.SIGKILL):
        return StampFailure("timeout", f"stamper killed by signal {-(exitcode or 0)}")
    if exitcode == -signal.SIGABRT:  # pdfium aborts, rather than raise, when RLIMIT_AS refuses it memory
        return StampFailure("memory", "stamper aborted: pdfium ran out of its address space")
    return StampFailure("failed", f"stamper exited with {exitcode}")


def _in_child(target: Callable[..., None], args: tuple[Any, ...], timeout: float, read: Callable[[Connection], T]) -> T:
    """Run ``target(sender, *args)`` in a fresh child and ``read`` its answer from the other end of the pipe
    (``read`` raises :class:`StampFailure` when the answer says so); the child is killed at ``timeout``."""
    receiver, sender = _CTX.Pipe(duplex=False)
    child = _Child(target=target, args=(sender, *args), daemon=True)
    child.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            raise StampFailure("timeout", f"no answer within {timeout:.0f} s")
        return read(receiver)
    except (EOFError, OSError):
        child.join(1)
        raise _died(child.exitcode) from None
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receiver.close()


def run_stamp(source: bytes | Path, mark: CopyMark, limits: StampLimits, *, keep: bool = True) -> StampOutcome:
    """Stamp in a child process; raise :class:`StampFailure` on any failure, never a parser exception.

    A path is read by the child (under its memory limit), so a large upload is not copied through the pipe;
    a rehearsal (``keep=False``) gets no copy back, only the verdict."""
    deadline = time.monotonic() + limits.timeout_seconds

    def read(receiver: Connection) -> StampOutcome:
        header = receiver.recv()
        if header[0] != "ok":
            raise StampFailure(header[0], header[1])
        if not receiver.poll(max(0.0, deadline - time.monotonic())):
            raise StampFailure("timeout", f"no result within {limits.timeout_seconds:.0f} s")
        return StampOutcome(receiver.recv_bytes(), header[3], int(header[1]), float(header[2]))

    return _in_child(_child, (source, mark, limits, keep), limits.timeout_seconds, read)


def _vet_child(conn: Connection, source: bytes | Path, sha256_hex: str, pdf: PdfSettings, limits: StampLimits) -> None:
    _limit(limits)
    try:
        facts = vet_here(source, sha256_hex, pdf)
    except InvalidInput as exc:
        conn.send(("invalid", exc.code, exc.message, exc.details))
        return
    except MemoryError:
        conn.send(("memory", f"address space limit of {limits.memory_bytes} bytes reached"))
        return
    except Exception as exc:  # vet_here wraps parser errors; anything else is a fault of ours
        conn.send(("failed", f"{type(exc).__name__}: {exc}"[:500]))
        return
    conn.send(("ok", facts))


def run_vetting(source: bytes | Path, sha256_hex: str, pdf: PdfSettings) -> PdfFacts:
    """An upload's vetting and copy rehearsal (:func:`vault.pdf_vetting.vet_here`) in a child process under the
    copy path's limits: its facts, or the ``InvalidInput`` it raised, or :class:`StampFailure` if it failed,
    ran out of time or of memory. A path is read by the child, so a spooled upload never crosses the pipe."""
    limits = StampLimits.from_settings(pdf)

    def read(receiver: Connection) -> PdfFacts:
        answer = receiver.recv()
        if answer[0] == "ok":
            facts: PdfFacts = answer[1]
            return facts
        if answer[0] == "invalid":
            raise InvalidInput(answer[1], answer[2], **answer[3])
        raise StampFailure(answer[0], answer[1])

    return _in_child(_vet_child, (source, sha256_hex, pdf, limits), limits.timeout_seconds, read)


def busy(code: str) -> Refusal:
    """The refusal of a stamping that found no free slot: ``code`` is the caller's (``Copy.Busy``, ...)."""

    def refuse(_full: Full, _limit: int) -> Unavailable:
        return Unavailable(code, "too many documents are being stamped; retry shortly", retry_after_seconds=2)

    return refuse


_SLOTS: dict[tuple[int, int], Slots] = {}
_SLOTS_LOCK = threading.Lock()


def slots_for(pdf: PdfSettings) -> Slots:
    """This process's slots for these caps (one instance per configuration, shared by every request)."""
    with _SLOTS_LOCK:
        return _SLOTS.setdefault(
            (pdf.stamp_concurrency, pdf.stamp_per_org), Slots(pdf.stamp_concurrency, pdf.stamp_per_org)
        )


def stamp_for_copy(pdf: PdfSettings, org_id: str, source: bytes, mark: CopyMark) -> bytes:
    """The marked copy, made in a child within this tenant's and the process's share of slots."""
    with slots_for(pdf).slot(org_id, busy("Copy.Busy"), org=org_id):  # its own cap, and its fair share
        try:
            return run_stamp(source, mark, StampLimits.from_settings(pdf)).pdf
        except StampFailure as exc:
            log.error("stamping copy %s of %s failed: %s", mark.copy_id, mark.source_sha256, exc)
            raise CopyStampError(
                _COPY_CODES[exc.kind], "the copy could not be stamped", copy_id=mark.copy_id, reason=exc.kind
            ) from exc
