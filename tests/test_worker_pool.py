"""The stamper's pool of long-lived workers keeps every limit a fresh child per job had.

A worker killed in the middle of a job is replaced and its job refused with today's code; a memory bomb is
refused and the next job of the same pool is served; a job past its CPU budget is killed with the right code
while the wall clock is far; the pool never holds more than its size; and ``evault serve``, stopped with a
vetting in flight, ends within its grace period and the pool's bound instead of waiting for the document.
A worker keeps its freed buffers for its next job instead of faulting them in again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from compliance.conditions.copy_mark import CopyMark
from compliance.conditions.mark_check import check_copy
from compliance.errors import InvalidInput, Unavailable
from storage.settings import PdfSettings, Settings, SettingsError
from tests import hostile_pdfs, pdf_factory, signed_pdfs
from tests.helpers import create_envelope, evault_serve, pipe_messages, server_port, upload
from vault.pdf_inspect import inspect_pdf
from vault.stamp_worker import PRELOAD, CopyStampError, StampLimits, run_stamp, run_vetting, stamp_for_copy
from vault.worker_pool import HANDOFF_MIN_BYTES, StampFailure, WorkerPool, close_pools, forkserver_pid, pool_for

MiB = 1024 * 1024
SMALL = pdf_factory.make_pdf(pages=2)


def _mark(source: bytes) -> CopyMark:
    return CopyMark("cp_pool00000000000000000", "env_pool", hashlib.sha256(source).hexdigest(), dt.datetime.now(dt.UTC))


def _pool(pdf: PdfSettings) -> WorkerPool:
    return pool_for(StampLimits.from_settings(pdf).pool())


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name, from the state on."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def _cpu(pid: int) -> float:
    return sum(int(v) for v in _stat(pid)[11:13]) / os.sysconf("SC_CLK_TCK")


def _minor_faults(pid: int) -> int:
    return int(_stat(pid)[7])


def _alive(pid: int) -> bool:
    try:
        return _stat(pid)[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped before or while its stat was read
        return False


def _in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    """``call()`` in a thread; its result or exception lands in the list."""
    answer: list[Any] = []

    def run() -> None:
        try:
            answer.append(call())
        except Exception as exc:
            answer.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, answer


def _busy_worker(pool: WorkerPool, cpu: float = 0.3) -> int:
    """The pid of the pool's one worker once it has spent ``cpu`` seconds on the job in flight."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = pool.pids()
        if pids and _cpu(pids[0]) >= cpu:
            return pids[0]
        time.sleep(0.05)
    raise AssertionError("no worker got to work")


@pytest.mark.once
def test_a_worker_killed_mid_job_is_replaced_and_the_next_job_is_served() -> None:
    pdf = PdfSettings(workers=1)
    assert inspect_pdf(SMALL, pdf).page_count == 2  # the worker is warm
    pool = _pool(pdf)
    (first,) = pool.pids()
    slow = hostile_pdfs.shared_content(5000)  # seconds of vetting and pixel-checked rehearsal
    thread, answer = _in_thread(lambda: inspect_pdf(slow, pdf))
    assert _busy_worker(pool, _cpu(first) + 0.3) == first  # the same worker took the next job
    os.kill(first, signal.SIGKILL)
    thread.join(60)
    (refusal,) = answer
    assert isinstance(refusal, InvalidInput), refusal
    assert (refusal.code, refusal.details["limit"]) == ("Document.TooComplex", "max_cpu_seconds")
    (replacement,) = pool.pids()
    assert replacement != first
    assert inspect_pdf(SMALL, pdf).page_count == 2
    assert pool.pids() == [replacement]
    os.kill(replacement, signal.SIGKILL)  # killed while idle: the next job is not blamed for it
    while _alive(replacement):
        time.sleep(0.01)
    assert inspect_pdf(SMALL, pdf).page_count == 2
    assert replacement not in pool.pids() and len(pool.pids()) == 1


@pytest.mark.once
def test_a_memory_bomb_is_refused_and_the_next_upload_in_the_same_pool_succeeds() -> None:
    """Five 74 MB streams joined by the rehearsal need more than the 256 MiB address space: the upload is
    refused as too complex for the memory limit, its worker retired, and the pool serves the next one."""
    pdf = PdfSettings(
        stamp_memory_bytes=256 * MiB, max_decoded_bytes=1 << 30, workers=1, worker_max_rss_bytes=200 * MiB
    )
    blob = hostile_pdfs.inflating_stream(74_000_000)
    refs = b" ".join(b"%d 0 R" % (6 + i) for i in range(5))
    bomb = hostile_pdfs.assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents [" + refs + b"] >>",
            b"null",
            b"null",
            *[hostile_pdfs.stream(b"/Filter /FlateDecode", blob) for _ in range(5)],
        ]
    )
    assert inspect_pdf(SMALL, pdf).page_count == 2
    pool = _pool(pdf)
    (first,) = pool.pids()
    with pytest.raises(InvalidInput) as info:
        inspect_pdf(bomb, pdf)
    assert (info.value.code, info.value.details["limit"]) == ("Document.TooComplex", "stamp_memory_bytes")
    assert _pool(pdf) is pool and pool.pids() != [first]  # the same pool, a fresh worker
    assert inspect_pdf(SMALL, pdf).page_count == 2
    limits = StampLimits.from_settings(pdf)
    with pytest.raises(StampFailure) as failure:  # the copy path's own stamping meets the same limit
        run_stamp(bomb, _mark(bomb), limits, keep=False)
    assert failure.value.kind == "memory"
    assert run_stamp(SMALL, _mark(SMALL), limits).check.passed


@pytest.mark.once
def test_a_job_past_its_cpu_budget_is_refused_with_the_right_code_while_the_wall_clock_is_far() -> None:
    """The budget is each job's own: jobs that together spend more than it pass; one job past it is killed
    (SIGXCPU) long before its 60 s wall clock, and the copy path answers ``Copy.StampTimeout``."""
    pdf = PdfSettings(max_cpu_seconds=1, stamp_timeout_seconds=60, workers=1)
    limits = StampLimits.from_settings(pdf)
    medium = hostile_pdfs.shared_content(300)  # ~0.16 s of CPU to stamp and check here
    run_stamp(medium, _mark(medium), limits)
    (worker,) = _pool(pdf).pids()
    spent = _cpu(worker)
    while _cpu(worker) < spent + 1.5:  # more than one budget in all, in one worker
        assert run_stamp(medium, _mark(medium), limits).check.passed
    assert _pool(pdf).pids() == [worker]
    slow = hostile_pdfs.shared_content(20_000)  # never vetted: seconds to stamp
    started = time.monotonic()
    with pytest.raises(CopyStampError) as info:
        stamp_for_copy(pdf, "org_a", slow, _mark(slow))
    assert info.value.code == "Copy.StampTimeout"
    assert time.monotonic() - started < 30
    assert _pool(pdf).pids() != [worker]
    with pytest.raises(InvalidInput) as refusal:  # the vetting's answer to the same budget
        inspect_pdf(hostile_pdfs.shared_content(5000), dataclasses.replace(pdf, max_cpu_seconds=1))
    assert (refusal.value.code, refusal.value.details["limit"]) == ("Document.TooComplex", "max_cpu_seconds")


def test_a_starved_job_is_refused_as_ours_to_retry_not_as_the_documents_fault() -> None:
    """A worker that gets (almost) no CPU before the wall clock, as a niced worker on a saturated host, is
    killed and its job answered 503 with Retry-After: a small document is not ``Document.TooComplex``."""
    pdf = PdfSettings(workers=1, stamp_timeout_seconds=2)
    assert inspect_pdf(SMALL, pdf).page_count == 2
    pool = _pool(pdf)
    (worker,) = pool.pids()
    with open(f"/proc/{worker}/stat") as stat:
        assert int(stat.read().rsplit(")", 1)[1].split()[16]) == 10  # the default niceness, applied
    os.kill(worker, signal.SIGSTOP)  # no CPU at all: starvation in its purest form
    with pytest.raises(Unavailable) as refusal:
        inspect_pdf(SMALL, pdf)
    assert refusal.value.code == "Vault.Busy" and refusal.value.details["retry_after_seconds"] > 0
    assert worker not in pool.pids()
    assert inspect_pdf(SMALL, pdf).page_count == 2


def _live_workers() -> int:
    """The forkserver's children that are alive (every worker is one; a killed one may linger as a zombie)."""
    server = forkserver_pid(PRELOAD)
    with open(f"/proc/{server}/task/{server}/children") as children:
        pids = children.read().split()
    return sum(_alive(int(pid)) for pid in pids)


@pytest.mark.once
def test_the_pool_holds_its_size_under_concurrency() -> None:
    """Eight clients of four organisations, workers recycled every three jobs and one killed: never more than
    two workers alive, every job answered, and two workers at the end."""
    close_pools()
    pdf = PdfSettings(workers=2, worker_max_jobs=3)
    pool = _pool(pdf)
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if forkserver_pid(PRELOAD) is not None:
                seen.append(_live_workers())
            time.sleep(0.005)

    answers: list[Any] = []

    def client(org: str) -> None:
        for _ in range(5):
            try:
                answers.append(inspect_pdf(SMALL, pdf, org).page_count)
            except Exception as exc:
                answers.append(exc)

    watcher = threading.Thread(target=watch)
    watcher.start()
    clients = [threading.Thread(target=client, args=(f"org_{i % 4}",)) for i in range(8)]
    for thread in clients:
        thread.start()
    while not pool.pids():
        time.sleep(0.01)
    os.kill(pool.pids()[0], signal.SIGKILL)
    for thread in clients:
        thread.join(120)
    stop.set()
    watcher.join()
    refused = [a for a in answers if not isinstance(a, int)]
    assert len(answers) == 40 and len(refused) <= 1, refused  # only the killed worker's job, if it had one
    assert max(seen) <= 2, max(seen)
    assert len(pool.pids()) == 2


# --- evault serve, stopped with a vetting in flight ---------------------------------------------------------

GRACE = 1  # EVAULT_SHUTDOWN_GRACE_SECONDS
BOUND = GRACE + 9  # seconds from SIGTERM to exit: the grace, the runtime's close, the interpreter's exit


@contextlib.contextmanager
def _serving(
    vault_env: dict[str, str], tmp_path: Path, timeout: float, **settings: str
) -> Iterator[tuple[subprocess.Popen[bytes], httpx.Client]]:
    """``evault serve`` on a port of its own, its output in ``tmp_path/serve.log``."""
    with (
        (tmp_path / "serve.log").open("wb") as log,
        evault_serve(vault_env, server_port(), timeout, log, **settings) as served,
    ):
        yield served


@pytest.mark.s3
@pytest.mark.once
def test_sigterm_with_a_vetting_in_flight_ends_within_the_bound(
    vault_env: dict[str, str], make_key: Any, tmp_path: Path
) -> None:
    """A vetting that would take about a minute (limits raised for it): SIGTERM ends the service in seconds;
    before the pool, the request's thread waited for its child until the document was done."""
    _, key = make_key()
    headers = {"X-API-Key": key}
    slow = hostile_pdfs.shared_content(60_000)
    settings = {
        "EVAULT_SHUTDOWN_GRACE_SECONDS": str(GRACE),
        "EVAULT_MAX_UPLOAD_BYTES": str(64 * MiB),
        "EVAULT_PDF_MAX_PAGES": "200000",
        "EVAULT_PDF_MAX_CPU_SECONDS": "300",
        "EVAULT_PDF_STAMP_TIMEOUT_SECONDS": "300",
    }
    with _serving(vault_env, tmp_path, 300, **settings) as (proc, http):
        envelope_id = create_envelope(http, headers)
        thread, answer = _in_thread(lambda: upload(http, headers, envelope_id, slow))
        while not [c for c in _stampers(proc.pid) if _cpu(c) > 1.0]:  # a PDF worker is at the vetting
            assert thread.is_alive(), f"the upload ended before the stop: {answer[0].text}"
            time.sleep(0.1)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(BOUND + 30)
        took = time.monotonic() - started
        thread.join(30)
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()
    assert took < BOUND, took


def _children(pid: int) -> list[int]:
    """The children of every thread of ``pid`` (each thread's list holds those it started)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            pass
    return found


def _forkservers(service: int, preloading: bytes = b"") -> dict[int, list[int]]:
    """The service's forkservers (its children running multiprocessing's forkserver) whose command line names
    ``preloading``, each with its workers."""
    found = {}
    for child in _children(service):
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"multiprocessing.forkserver" in command and preloading in command:
                found[child] = sorted(_children(child))
    return found


def _stampers(service: int) -> list[int]:
    """The service's PDF workers: the children of the forkserver that preloads the stamper."""
    return [worker for workers in _forkservers(service, b"vault.stamp_worker").values() for worker in workers]


@pytest.mark.s3
def test_the_service_starts_its_workers_before_it_serves(
    vault_env: dict[str, str], make_key: Any, tmp_path: Path
) -> None:
    """The first upload after a restart waited 0.6-0.8 s for the stampers' forkserver and the first compliance
    read ~2 s for an evidence worker to import and open the vault. ``evault serve`` starts both pools before it
    answers: the first upload and the first compliance read are served by the workers that were there, and
    nothing new is started for them."""
    _, key = make_key()
    headers = {"X-API-Key": key}
    with _serving(vault_env, tmp_path, 120) as (proc, http):
        started = _forkservers(proc.pid)
        assert len(started) == 2 and all(started.values()), started  # the stampers' and the evidence's
        envelope_id = create_envelope(http, headers)
        assert upload(http, headers, envelope_id, SMALL).status_code == 201
        compliance = http.get(f"/api/v2/partner/envelopes/{envelope_id}/compliance", headers=headers)
        assert compliance.status_code == 200, compliance.text
        assert _forkservers(proc.pid) == started


@pytest.mark.once
def test_a_worker_reuses_its_buffers_from_one_job_to_the_next(tmp_path: Path) -> None:
    """With glibc's defaults a worker gave back and faulted in again ~1,150 pages (4.5 MB) for each vetting of a
    1 MiB signed PDF read from its spool file, 10-20 % of the job's CPU. vault.allocator keeps its buffers: about
    160 faults a job remain here."""
    source = tmp_path / "signed.pdf"
    source.write_bytes(signed_pdfs.padded(MiB))
    root = pdf_factory.signing_pki()[2].dump()
    pdf = PdfSettings(workers=1, worker_max_jobs=97)  # a pool of its own, with one worker to watch
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    for _ in range(3):  # the first jobs fill the worker's heap
        assert run_vetting(source, digest, pdf, "org_faults", (root,)).signature_count == 1
    (worker,) = _pool(pdf).pids()
    before = _minor_faults(worker)
    for _ in range(4):
        assert run_vetting(source, digest, pdf, "org_faults", (root,)).signature_count == 1
    assert _pool(pdf).pids() == [worker]
    per_job = (_minor_faults(worker) - before) / 4
    assert per_job < 400, f"{per_job:.0f} minor page faults per job"


def _memory_files(pid: int) -> int:
    """How many of the process's descriptors are a job's memory file."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed while listed
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("/memfd:evault-job")
    return count


@pytest.mark.once
def test_a_document_reaches_its_worker_as_a_memory_file_not_through_the_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1 MiB upload pickled into the pipe cost the service ~0.85 ms of CPU and its worker ~0.4 ms, and an 8
    MiB copy read back from it ~8.8 ms; both cross as a memory file's descriptor now. The worker vets and
    stamps the very bytes and the service gets the very copy, no message either way holds a document (a small
    one still goes inline), and no memory file stays open on either side."""
    sent, received = pipe_messages(monkeypatch)
    large = pdf_factory.make_pdf(pages=3, size_bytes=MiB)
    digest = hashlib.sha256(large).hexdigest()
    pdf = PdfSettings(workers=1, worker_max_jobs=97)  # a pool of its own, with one worker to watch
    for _ in range(3):
        assert run_vetting(large, digest, pdf, "org_handoff").page_count == 3
        mark = _mark(large)
        stamped = run_stamp(large, mark, StampLimits.from_settings(pdf), org="org_handoff")
        assert stamped.check.passed and len(stamped.check.pages) == 3
        assert len(stamped.pdf) > MiB and check_copy(large, stamped.pdf, mark.copy_id).passed
    assert 0 < max(sent) < HANDOFF_MIN_BYTES, sent
    assert 0 < max(received) < HANDOFF_MIN_BYTES, received

    sent.clear()
    assert run_vetting(SMALL, hashlib.sha256(SMALL).hexdigest(), pdf, "org_handoff").page_count == 2
    assert max(sent) > len(SMALL) and len(SMALL) < HANDOFF_MIN_BYTES  # inline: cheaper than a memory file
    (worker,) = _pool(pdf).pids()  # done with the stamping's memory file: it took this job after
    assert _memory_files(os.getpid()) == 0 and _memory_files(worker) == 0


@pytest.mark.once
def test_pool_settings_are_read_and_bounded() -> None:
    pdf = Settings.from_env({}).pdf
    assert (pdf.workers, pdf.worker_max_jobs, pdf.worker_max_rss_bytes) == (2, 200, 512 * MiB)
    pdf = Settings.from_env({"EVAULT_PDF_WORKERS": "3", "EVAULT_PDF_WORKER_MAX_JOBS": "7"}).pdf
    assert StampLimits.from_settings(pdf).pool().size == 3 and pdf.worker_max_jobs == 7
    assert Settings.from_env({"EVAULT_PDF_STAMP_MEMORY_BYTES": str(256 * MiB)}).pdf.worker_max_rss_bytes == 128 * MiB
    with pytest.raises(SettingsError, match="EVAULT_PDF_WORKER_MAX_RSS_BYTES"):
        Settings.from_env(
            {"EVAULT_PDF_STAMP_MEMORY_BYTES": str(256 * MiB), "EVAULT_PDF_WORKER_MAX_RSS_BYTES": str(300 * MiB)}
        )
    with pytest.raises(SettingsError, match="EVAULT_PDF_WORKERS"):
        Settings.from_env({"EVAULT_PDF_WORKERS": "0"})
