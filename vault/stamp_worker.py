"""Stamping and vetting in a pooled worker process with a memory limit, a CPU budget and a deadline, and a cap
on how many run at once.

A copy is made from a document an outsider wrote, and an upload's vetting reads one. pypdf holds the whole
file (and whatever it decodes) in memory and has no time limit, so each stamping runs in a long-lived worker
forked from a clean forkserver (never from the threaded service process; ``vault.worker_pool``), with
``RLIMIT_AS`` set in the worker, a CPU budget per job, a wall-clock deadline in the parent, which kills it,
and a lower scheduling priority (``EVAULT_PDF_WORKER_NICE``) so that the service's own threads win the CPU.
The worker also checks the copy it made against the original
(:func:`~compliance.conditions.mark_check.check_copy`: pdfium reading a hostile file belongs under the same
limits), and a copy whose mark fails is never handed back. Failures come back as :class:`StampFailure` with a
kind the callers turn into their own stable codes. An upload's vetting (:func:`run_vetting`) runs the same way,
in the same workers, so its parsing and its rehearsal of a copy never hold the service's memory, CPU or GIL.

The concurrency cap is in-process state (:class:`~vault.slots.Slots`): each service process has its own, so with
several workers the machine-wide bound is workers x ``EVAULT_PDF_STAMP_CONCURRENCY`` (it bounds this process's
stampers). An organisation's ``EVAULT_PDF_STAMP_PER_ORG`` also holds across processes: the callers take a
slot lease first (:func:`vault.slot_leases.stamping_slot`). A request that finds no free slot is refused with a
retry hint instead of queueing without bound.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from compliance.conditions.copy_mark import CopyMark
from compliance.conditions.mark_check import MarkCheck, check_copy
from compliance.errors import EvaultError, InvalidInput, Unavailable
from storage.settings import PdfSettings
from vault.copy_stamp import stamp_copy
from vault.pdf_vetting import PdfFacts, vet_here
from vault.slots import Full, Refusal, Slots
from vault.worker_pool import (
    Handoff,
    Job,
    PoolConfig,
    StampFailure,
    job_usage,
    pool_for,
    receive_document,
    send_document,
)

log = logging.getLogger("evault.stamp")
PRELOAD = ("vault.stamp_worker", "vault.worker_preload")  # what the stampers' forkserver imports first


@dataclass(frozen=True)
class StampLimits:
    memory_bytes: int
    cpu_seconds: int
    timeout_seconds: float
    nice: int = 0  # added to the workers' niceness: the service's threads first
    workers: int = 2  # the pool's size
    worker_jobs: int = 200  # jobs before a worker is replaced
    worker_rss_bytes: int = 512 * 1024 * 1024  # resident memory after a job past which a worker is replaced

    @classmethod
    def from_settings(cls, pdf: PdfSettings) -> StampLimits:
        return cls(
            pdf.stamp_memory_bytes,
            pdf.max_cpu_seconds,
            float(pdf.stamp_timeout_seconds),
            pdf.worker_nice,
            pdf.workers,
            pdf.worker_max_jobs,
            pdf.worker_max_rss_bytes,
        )

    def pool(self) -> PoolConfig:
        return PoolConfig(self.memory_bytes, self.nice, self.workers, self.worker_jobs, self.worker_rss_bytes, PRELOAD)


@dataclass(frozen=True)
class StampOutcome:
    pdf: bytes
    check: MarkCheck  # the copy against the original, made in the worker before the copy was handed back
    peak_rss_bytes: int  # the worker's high-water mark during this job (ru_maxrss, reset per job), measured in it
    cpu_seconds: float  # the worker's CPU during this job


class CopyStampError(EvaultError):
    """A vetted document could not be stamped: a bug or a budget set too low, never the client's doing (500)."""

    category = "integrity"


_COPY_CODES = {
    "failed": "Copy.StampFailed",
    "timeout": "Copy.StampTimeout",
    "memory": "Copy.TooComplex",
    "unmarked": "Vault.CopyNotMarked",
}


def _child(conn: Connection, source: bytes | Path, mark: CopyMark, memory_bytes: int, keep: bool) -> None:
    try:
        original = source.read_bytes() if isinstance(source, Path) else source
        pdf = stamp_copy(original, mark)
        check = check_copy(original, pdf, mark.copy_id)
    except MemoryError:
        conn.send(("memory", f"address space limit of {memory_bytes} bytes reached"))
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
    peak_rss, cpu = job_usage()
    conn.send(("ok", peak_rss, cpu, check))
    send_document(conn, pdf if keep else b"")


def run_stamp(
    source: bytes | Path, mark: CopyMark, limits: StampLimits, *, keep: bool = True, org: str | None = None
) -> StampOutcome:
    """Stamp in a worker; raise :class:`StampFailure` on any failure, never a parser exception (and 503
    ``Copy.Busy`` when no worker frees within the deadline).

    A path is read by the worker (under its memory limit), and bytes reach it as a memory file
    (:class:`~vault.worker_pool.Handoff`), and so does the copy coming back, so a document is never copied
    through the pipe; a rehearsal (``keep=False``) gets no copy back, only the verdict."""

    def read(receiver: Connection, deadline: float) -> StampOutcome:
        header = receiver.recv()
        if header[0] != "ok":
            raise StampFailure(header[0], header[1])
        if not receiver.poll(max(0.0, deadline - time.monotonic())):
            raise StampFailure("timeout", f"no result within {limits.timeout_seconds:.0f} s")
        return StampOutcome(receive_document(receiver), header[3], int(header[1]), float(header[2]))

    document = Handoff(source) if isinstance(source, bytes) else source
    job = Job(_child, (document, mark, limits.memory_bytes, keep), limits.cpu_seconds, limits.timeout_seconds, read)
    return pool_for(limits.pool()).run(job, org, busy("Copy.Busy"))


def _vet_child(
    conn: Connection, source: bytes | Path, sha256_hex: str, pdf: PdfSettings, trust_roots: tuple[bytes, ...]
) -> None:
    try:
        facts = vet_here(source, sha256_hex, pdf, trust_roots)
    except InvalidInput as exc:
        conn.send(("invalid", exc.code, exc.message, exc.details))
        return
    except MemoryError:
        conn.send(("memory", f"address space limit of {pdf.stamp_memory_bytes} bytes reached"))
        return
    except Exception as exc:  # vet_here wraps parser errors; anything else is a fault of ours
        conn.send(("failed", f"{type(exc).__name__}: {exc}"[:500]))
        return
    conn.send(("ok", facts))


def run_vetting(
    source: bytes | Path,
    sha256_hex: str,
    pdf: PdfSettings,
    org: str | None = None,
    trust_roots: tuple[bytes, ...] = (),
) -> PdfFacts:
    """An upload's vetting, copy rehearsal and signature grading against ``trust_roots`` (DER;
    :func:`vault.pdf_vetting.vet_here`) in a worker under the copy path's limits: its facts, or the
    ``InvalidInput`` it raised, or :class:`StampFailure` if it failed, ran out of time or of memory (503
    ``Vault.Busy`` when no worker frees within the deadline). A path is read by the worker, and bytes held in
    memory reach it as a memory file, so no upload crosses the pipe."""
    limits = StampLimits.from_settings(pdf)

    def read(receiver: Connection, _deadline: float) -> PdfFacts:
        answer = receiver.recv()
        if answer[0] == "ok":
            facts: PdfFacts = answer[1]
            return facts
        if answer[0] == "invalid":
            raise InvalidInput(answer[1], answer[2], **answer[3])
        raise StampFailure(answer[0], answer[1])

    document = Handoff(source) if isinstance(source, bytes) else source
    job = Job(_vet_child, (document, sha256_hex, pdf, trust_roots), limits.cpu_seconds, limits.timeout_seconds, read)
    return pool_for(limits.pool()).run(job, org, busy("Vault.Busy"))


def warm_stampers(pdf: PdfSettings) -> None:
    """Start the stampers' forkserver and a worker before the first upload needs them (0.5-0.7 s here)."""
    pool_for(StampLimits.from_settings(pdf).pool()).warm(busy("Vault.Busy"))


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
    """The marked copy, made in a worker within this tenant's and the process's share of slots."""
    with slots_for(pdf).slot(org_id, busy("Copy.Busy"), org=org_id):  # its own cap, and its fair share
        try:
            return run_stamp(source, mark, StampLimits.from_settings(pdf), org=org_id).pdf
        except StampFailure as exc:
            log.error("stamping copy %s of %s failed: %s", mark.copy_id, mark.source_sha256, exc)
            raise CopyStampError(
                _COPY_CODES[exc.kind], "the copy could not be stamped", copy_id=mark.copy_id, reason=exc.kind
            ) from exc
