"""Evidence reads are bounded and cheap: a copy's mark is checked once, at issuance, and the compliance routes
run in a bounded pool (per organisation, with a deadline), stop when the client leaves, and never hold up a stop.

Slow storage is real here: the service talks to the real SeaweedFS through :class:`tests.slow_link.SlowLink`,
which holds every request for a set time, so one compliance check takes seconds as it does against a distant
or busy store. Both databases: the checks, the register and the ledger are in the database under test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from sqlmodel import select

from storage.embedded_s3 import EmbeddedS3
from storage.models import CopyRecord, Event
from storage.settings import EvidenceWorkSettings
from tests.helpers import API, create_envelope, disarm_triggers, upload
from tests.pdf_factory import make_pdf
from tests.ports import aux_port
from tests.slow_link import SlowLink, slow_link
from vault.api.app import create_app
from vault.evidence_work import PRELOAD as EVIDENCE_PRELOAD
from vault.evidence_work import EvidenceWork
from vault.runtime import Runtime
from vault.worker_pool import forkserver_pid

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def link(embedded_s3: EmbeddedS3) -> Iterator[SlowLink]:
    with slow_link(embedded_s3.endpoint.url, aux_port("slow_link")) as opened:
        yield opened


@pytest.fixture
def vault_env(vault_env: dict[str, str], link: SlowLink) -> dict[str, str]:
    return {
        **vault_env,
        "EVAULT_S3_ENDPOINT": link.url,
        "EVAULT_EVIDENCE_CONCURRENCY": "2",
        "EVAULT_EVIDENCE_PER_ORG": "1",
        "EVAULT_EVIDENCE_DEADLINE_SECONDS": "3",
    }


@pytest.fixture(autouse=True)
def warm(runtime: Runtime) -> None:
    """The workers started before the first request, as ``evault serve`` starts them: their first start
    (forkservers importing the PDF and evidence code, a worker joining the vault) took about 2.5 s on one
    machine and past the first check's 3 s deadline here on another."""
    runtime.warm_workers()


@pytest.fixture
def base_url(runtime: Runtime) -> Iterator[str]:
    """The app served by uvicorn on a loopback port of this test's range, in a thread."""
    port = aux_port("evidence_reads")
    config = uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not running.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(20)


def _vaulted(client: Any, headers: dict[str, str], copies: int) -> str:
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf(pages=2)).status_code == 201
    for _ in range(copies):
        response = client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers)
        assert response.status_code == 200, response.text
    return envelope_id


def _compliance(base: str, headers: dict[str, str], envelope_id: str, timeout: float = 60) -> httpx.Response:
    return httpx.get(f"{base}{API}/envelopes/{envelope_id}/compliance", headers=headers, timeout=timeout)


def _condition(result: dict[str, Any], number: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in result["conditions"] if c["condition"] == number)
    return found


# --- the mark, verified once --------------------------------------------------------------------------------


def test_compliance_and_certificates_never_read_a_copys_bytes(
    client: Any, tenant: Any, runtime: Runtime, link: SlowLink
) -> None:
    """Counted at the store's door (the relay), since the checks run in the evidence workers."""
    _, headers = tenant
    envelope_id = _vaulted(client, headers, copies=3)
    seen = len(link.lines)
    result = client.get(f"{API}/envelopes/{envelope_id}/compliance?checkpoint=now", headers=headers).json()
    certificate = client.get(f"{API}/envelopes/{envelope_id}/vault/certificate", headers=headers)
    assert result["verdict"] == "pass", result
    assert certificate.status_code == 200 and certificate.json()["certificate"]["conditions"]["verdict"] == "pass"
    copies = [line.split()[:2] for line in link.lines[seen:] if line.split()[1].startswith(f"/{runtime.copies.bucket}")]
    reads = [target for method, target in copies if method == "GET" and "versions" not in urlsplit(target).query]
    listings = [target for method, target in copies if method == "GET" and "versions" in urlsplit(target).query]
    assert reads == []  # not one copy read, whole or in part
    assert len(copies) == len(listings) == 2  # one listing per check (the certificate's included), however many copies


def test_issuance_records_the_mark_check_with_the_copy_and_in_the_ledger(
    client: Any, tenant: Any, runtime: Runtime
) -> None:
    _, headers = tenant
    envelope_id = _vaulted(client, headers, copies=1)
    with runtime.db.read_session() as session:
        (copy,) = session.exec(select(CopyRecord).where(CopyRecord.envelope_id == envelope_id)).all()
        (event,) = session.exec(
            select(Event).where(Event.envelope_id == envelope_id, Event.event_type == "vault.copy_issued")
        ).all()
    assert copy.mark_verified_at is not None
    assert b'"mark_verified_at":"' in event.entry and copy.sha256.encode() in event.entry
    result = client.get(f"{API}/envelopes/{envelope_id}/compliance?checkpoint=now", headers=headers).json()
    assert _condition(result, "5")["status"] == "pass"
    assert _condition(result, "5")["evidence"]["copies"][0]["stored_size"] == copy.size


def test_a_copy_whose_mark_was_never_verified_fails_condition_5(client: Any, tenant: Any, runtime: Runtime) -> None:
    """What a copy registered before marks were checked at issuance looks like (or a row edited by hand)."""
    _, headers = tenant
    envelope_id = _vaulted(client, headers, copies=1)
    with runtime.db.session() as session:
        disarm_triggers(session, "copy_record")
        (copy,) = session.exec(select(CopyRecord).where(CopyRecord.envelope_id == envelope_id)).all()
        copy.mark_verified_at = None
        session.add(copy)
    result = client.get(f"{API}/envelopes/{envelope_id}/compliance?checkpoint=now", headers=headers).json()
    five = _condition(result, "5")
    assert five["status"] == "fail" and "mark was not verified when it was issued" in " ".join(five["reasons"])


def test_a_registered_copy_removed_from_the_store_fails_condition_5(client: Any, tenant: Any, runtime: Runtime) -> None:
    _, headers = tenant
    envelope_id = _vaulted(client, headers, copies=1)
    with runtime.db.read_session() as session:
        (copy,) = session.exec(select(CopyRecord).where(CopyRecord.envelope_id == envelope_id)).all()
    runtime.copies.delete_version(copy.s3_key, copy.s3_version_id)
    result = client.get(f"{API}/envelopes/{envelope_id}/compliance?checkpoint=now", headers=headers).json()
    five = _condition(result, "5")
    assert five["status"] == "fail" and "is not in the store" in " ".join(five["reasons"])


# --- the pool: a cap per organisation, a deadline, cancellation -----------------------------------------------


def test_every_evidence_worker_is_started_and_joined_ahead(runtime: Runtime) -> None:
    """``warm`` (as ``evault serve`` starts) leaves ``EVAULT_EVIDENCE_CONCURRENCY`` workers, each of which has
    opened the vault: with one, a second organisation's first check while it was busy waited for a worker's
    start and join, past this module's deadline on a loaded machine."""
    assert len(_evidence_workers()) == 2


def test_one_organisation_gets_503_beyond_its_share_while_another_is_served(
    client: Any, make_key: Any, base_url: str, link: SlowLink
) -> None:
    a_headers, b_headers = ({"X-API-Key": make_key()[1]} for _ in range(2))
    a_envelope, b_envelope = _vaulted(client, a_headers, 0), _vaulted(client, b_headers, 0)
    # A worker's first check is not what this test times (the fixture ``warm`` starts one; a second may still
    # start here): B's first check runs before the link is slowed.
    assert _compliance(base_url, b_headers, b_envelope).status_code == 200
    link.delay = 0.35  # a check now takes about 1.4 s (four delayed requests): long enough to overlap
    answers: dict[str, httpx.Response] = {}
    first = threading.Thread(target=lambda: answers.setdefault("a1", _compliance(base_url, a_headers, a_envelope)))
    first.start()
    time.sleep(0.5)  # A's first check is at work
    started = time.monotonic()
    second, third = (_compliance(base_url, a_headers, a_envelope) for _ in range(2))
    refused_in = time.monotonic() - started
    other = _compliance(base_url, b_headers, b_envelope)
    first.join(60)
    for refused in (second, third):
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "Evidence.Busy" and int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["details"]["setting"] == "EVAULT_EVIDENCE_PER_ORG"
    assert refused_in < 1.0  # refused at once, not queued behind the first
    assert other.status_code == 200 and other.json()["verdict"] != "fail", other.text
    assert answers["a1"].status_code == 200, answers["a1"].text


def test_what_an_organisation_cannot_see_is_404_while_its_slot_is_taken(
    client: Any, make_key: Any, base_url: str, link: SlowLink
) -> None:
    """An evidence route looks up what it names before it takes its organisation's slot: requests for envelopes
    (and a transfer) that A cannot see are 404, not 503 ``Evidence.Busy``, while A's one slot is taken."""
    a_headers, b_headers = ({"X-API-Key": make_key()[1]} for _ in range(2))
    a_envelope, b_envelope = _vaulted(client, a_headers, 0), _vaulted(client, b_headers, 0)
    assert _compliance(base_url, a_headers, a_envelope).status_code == 200  # a worker's first check, untimed
    link.delay = 1.5  # A's next check outlasts its 3 s deadline, so its slot stays taken until then
    holder = threading.Thread(target=lambda: _compliance(base_url, a_headers, a_envelope))
    holder.start()
    time.sleep(0.5)  # A's check is at work
    urls = [
        f"{base_url}{API}/envelopes/{envelope_id}{route}"
        for envelope_id in ("env_" + "0" * 20, b_envelope)
        for route in (
            "/compliance",
            "/vault/certificate",
            "/audit",
            "/evidence",
            "/export-package",
            "/certified-copy",
            "/release-receipt",
        )
    ] + [f"{base_url}{API}/transfers/tr_{'0' * 20}/receipt"]
    with ThreadPoolExecutor(len(urls)) as pool:  # at once, as the reads that found this did
        missing = list(pool.map(lambda url: httpx.get(url, headers=a_headers, timeout=60), urls))
    after = _compliance(base_url, a_headers, a_envelope)  # the slot was still taken all that time
    holder.join(60)
    assert after.status_code == 503 and after.json()["code"] == "Evidence.Busy", after.text
    for url, answer in zip(urls, missing, strict=True):
        code = "Transfer.NotFound" if "/transfers/" in url else "Envelope.NotFound"
        assert answer.status_code == 404 and answer.json()["code"] == code, (url, answer.text)


def test_a_check_past_its_deadline_is_503_and_its_work_stops(
    client: Any, tenant: Any, base_url: str, link: SlowLink
) -> None:
    _, headers = tenant
    envelope_id = _vaulted(client, headers, copies=1)
    link.delay = 1.5  # the whole check needs four requests or more: six seconds
    started = time.monotonic()
    response = _compliance(base_url, headers, envelope_id)
    took = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "Evidence.Timeout" and int(response.headers["Retry-After"]) >= 1
    assert 3.0 <= took < 5.0  # EVAULT_EVIDENCE_DEADLINE_SECONDS=3, answered when it passed
    _stops(link, allow_seconds=1.5)
    link.delay = 0.0
    assert _compliance(base_url, headers, envelope_id).status_code == 200  # its slot was given back


def test_a_check_whose_client_disconnects_stops(
    client: Any, tenant: Any, runtime: Runtime, link: SlowLink, vault_env: dict[str, str]
) -> None:
    _, headers = tenant
    envelope_id = _vaulted(client, headers, copies=1)
    link.delay = 2.0  # the whole check needs four requests or more: eight seconds
    port = aux_port("evidence_reads")
    config = uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    runtime.evidence_work = EvidenceWork(EvidenceWorkSettings(deadline_seconds=60))  # not the deadline: the client
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with pytest.raises(httpx.ReadTimeout):
            _compliance(f"http://127.0.0.1:{port}", headers, envelope_id, timeout=1.5)
        _stops(link, allow_seconds=link.delay + 1.5)  # the step in flight (one delayed request) may finish
    finally:
        server.should_exit = True
        thread.join(20)


def test_checks_run_in_worker_processes_and_a_dead_worker_is_503_then_replaced(
    client: Any, tenant: Any, base_url: str, link: SlowLink
) -> None:
    """The check's work is not the service's process: killing the worker it runs in answers 503
    ``Evidence.WorkerFailed`` (the service lives on), and the next check gets a new worker."""
    _, headers = tenant
    envelope_id = _vaulted(client, headers, copies=1)
    _joined(base_url, headers, envelope_id)
    link.delay = 1.0  # the check needs four requests or more: four seconds (its deadline is three)
    answers: list[httpx.Response] = []
    caller = threading.Thread(target=lambda: answers.append(_compliance(base_url, headers, envelope_id)))
    caller.start()
    deadline = time.monotonic() + 10
    while not (workers := _evidence_workers()):
        assert time.monotonic() < deadline, "no evidence worker started"
        time.sleep(0.05)
    time.sleep(0.5)  # the worker is inside the check
    assert os.getpid() not in workers
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    caller.join(30)
    (failed,) = answers
    assert failed.status_code == 503, failed.text
    assert failed.json()["code"] == "Evidence.WorkerFailed" and int(failed.headers["Retry-After"]) >= 1
    link.delay = 0.0
    again = _compliance(base_url, headers, envelope_id)
    assert again.status_code == 200 and again.json()["verdict"] != "fail", again.text
    assert set(_evidence_workers()).isdisjoint(workers)


def test_an_error_answered_by_a_worker_keeps_the_worker(client: Any, tenant: Any, base_url: str) -> None:
    """A 404 is the job's answer, not the worker's failure: the same worker serves the next check (a new one
    would open the service's runtime again, a cost a tenant could make the service pay at will)."""
    _, headers = tenant
    envelope_id = _vaulted(client, headers, copies=0)
    _joined(base_url, headers, envelope_id)
    workers = _evidence_workers()
    missing = _compliance(base_url, headers, "env_00000000000000000000")
    assert missing.status_code == 404 and missing.json()["code"] == "Envelope.NotFound", missing.text
    assert _compliance(base_url, headers, envelope_id).status_code == 200
    assert _evidence_workers() == workers


def _joined(base_url: str, headers: dict[str, str], envelope_id: str) -> None:
    """A check answered: an evidence worker has joined the service (the first one, from a forkserver that has
    just started, may take longer than this module's three-second deadline on a busy machine)."""
    deadline = time.monotonic() + 60
    while (answer := _compliance(base_url, headers, envelope_id)).status_code != 200:
        assert answer.json()["code"] == "Evidence.Timeout" and time.monotonic() < deadline, answer.text


def _evidence_workers() -> list[int]:
    """The live children of the evidence workers' forkserver."""
    server = forkserver_pid(EVIDENCE_PRELOAD)
    if server is None:
        return []
    with open(f"/proc/{server}/task/{server}/children") as children:
        return [int(pid) for pid in children.read().split() if Path(f"/proc/{pid}").exists()]


def _stops(link: SlowLink, allow_seconds: float) -> None:
    """No request reaches the store after ``allow_seconds`` (the step in flight may finish)."""
    time.sleep(allow_seconds)
    settled = link.count()
    time.sleep(3.0)
    assert link.count() == settled, "the abandoned check kept reading the store"


# --- SIGTERM ----------------------------------------------------------------------------------------------------

GRACE = 2  # EVAULT_SHUTDOWN_GRACE_SECONDS
STOP_BOUND = GRACE + 5 + 15  # docs/design/bounded-work.md "Stopping"; main took 22.8 s, this 9-13 s


def _get(url: str, headers: dict[str, str]) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=120) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _serving(proc: subprocess.Popen[bytes]) -> str:
    """The base URL ``evault serve`` prints once it listens (``evault: serving http://host:port/api/...``)."""
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.decode()
        if line.startswith("evault: serving "):
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
            return line.split()[2].split("/api/", 1)[0]
    raise AssertionError(f"evault serve exited with {proc.wait()} before serving")


def test_sigterm_stops_the_service_within_its_bound_with_slow_compliance_work_in_flight(
    client: Any, tenant: Any, link: SlowLink, vault_env: dict[str, str]
) -> None:
    _, headers = tenant
    envelope_id = _vaulted(client, headers, copies=4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVAULT_")}
    env.update(
        vault_env,
        PYTHONPATH=str(ROOT),
        EVAULT_PORT="0",  # a free port, which it prints: no race with another run for a chosen one
        EVAULT_SHUTDOWN_GRACE_SECONDS=str(GRACE),
        EVAULT_EVIDENCE_DEADLINE_SECONDS="120",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "vault.cli.main", "serve"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    errors: list[bytes] = []
    assert proc.stderr is not None
    drain = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
    drain.start()
    try:
        base = _serving(proc)
        deadline = time.monotonic() + 60
        while _get(f"{base}/health", {}) != 200:
            assert proc.poll() is None and time.monotonic() < deadline, "evault serve did not start"
            time.sleep(0.3)
        link.delay = 3.0  # the check needs four requests or more: twelve seconds (before this change, 24+)
        url = f"{base}{API}/envelopes/{envelope_id}/compliance"
        caller = threading.Thread(target=_get, args=(url, headers), daemon=True)
        caller.start()
        time.sleep(2.0)  # the check is at work
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(STOP_BOUND + 30)
        except subprocess.TimeoutExpired:
            raise AssertionError("evault serve ignored SIGTERM") from None
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        drain.join(10)
        stderr = b"".join(errors).decode()
        link.delay = 0.0
    assert code == 0, stderr[-3000:]
    assert took < STOP_BOUND, f"stopped after {took:.1f} s\n{stderr[-3000:]}"
