"""Slow clients cannot hold shared capacity, against a real HTTP server on loopback (SQLite and PostgreSQL).

- sixteen uploads from four keys of one organisation, each trickling a byte every half second, take at most
  that organisation's share of the upload slots; another organisation uploads and reads meanwhile; the
  trickles end in 408 ``Request.BodyTimeout`` within their pace, and their slots and spools are released;
  bodies still trickling when their pace runs out read that 408 and a clean end, not a reset;
- a body sent at an honest pace, for longer than the header deadline, is served;
- connections whose headers never finish (or that send nothing) get 408 ``Request.HeaderTimeout`` and are
  closed after ``EVAULT_HEADER_TIMEOUT_SECONDS``; a client still sending then reads the 408 and a clean end;
- bytes that are not HTTP get 400 ``Request.Malformed`` in the API's error body, and a clean end;
- the slots' fair share: an organisation over its share beside others waits behind one below it.

The deadline and lingering tests run with each of uvicorn's parsers (httptools, as served, and h11).
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from compliance.errors import EvaultError, Unavailable
from tests.helpers import API, create_envelope, read_answer, send_head, serving, upload
from tests.pdf_factory import make_pdf
from tests.ports import port_range
from vault.api.app import create_app
from vault.runtime import Runtime
from vault.slots import Full, Slots
from vault.upload_spool import spool_dir

HEADER_TIMEOUT = 1
GRACE = 2
RATE = 1000  # bytes a second


@pytest.fixture
def vault_env(vault_env: dict[str, str]) -> dict[str, str]:
    return {
        **vault_env,
        "EVAULT_MAX_UPLOADS_PER_KEY": "4",
        "EVAULT_MAX_UPLOADS": "16",
        "EVAULT_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "EVAULT_BODY_GRACE_SECONDS": str(GRACE),
        "EVAULT_BODY_MIN_BYTES_PER_SECOND": str(RATE),
        "EVAULT_UPLOAD_SPOOL_MEMORY_BYTES": "0",  # every spooled byte goes to a file: its removal is visible
        "EVAULT_RATE_LIMIT": "1000/60",
    }


@pytest.fixture
def server(runtime: Runtime, request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    """The app served as ``evault serve`` serves it, on a loopback port of this helper's range, in a thread;
    with the parser a test names (:data:`EACH_PARSER`), else httptools, as the service runs."""
    parser = getattr(request, "param", "httptools")
    with serving(create_app(runtime), runtime.settings.edge, *port_range("slow_clients"), parser=parser) as address:
        yield address


# The header deadline and the lingering close are mixed into both of uvicorn's protocols: h11 is the fallback.
EACH_PARSER = pytest.mark.parametrize("server", ["httptools", "h11"], indirect=True)


def _trickle(sock: socket.socket, stop: threading.Event) -> tuple[int, str]:
    """Send a byte every half second until the server answers (or the test gives up): (status, code)."""
    sock.settimeout(0.5)
    while not stop.is_set():
        try:
            if sock.recv(1, socket.MSG_PEEK):
                break  # an answer is waiting
        except TimeoutError:
            pass
        except OSError:
            break
        try:
            sock.sendall(b"x")
        except OSError:
            break  # closed: the answer (if any) is in the socket's buffer
    if stop.is_set():
        return 0, "no answer"
    sock.settimeout(5)
    status, _, body = read_answer(sock)
    return status, body.get("code", "")


def test_slow_uploads_of_one_org_hold_only_its_share_and_end_with_408(
    server: tuple[str, int], runtime: Runtime, make_key: Any
) -> None:
    org_a, key = make_key()
    keys_a = [key] + [make_key(org_id=org_a)[1] for _ in range(3)]
    _, key_b = make_key()
    envelope_a = create_envelope_over(server, keys_a[0])
    envelope_b = create_envelope_over(server, key_b)
    path = f"{API}/envelopes/{envelope_a}/vault-in-upload"
    stop = threading.Event()
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def slow(raw_key: str) -> None:
        headers = {"X-API-Key": raw_key, "Content-Type": "application/pdf"}
        with send_head(server, path, headers, 100_000, b"%") as sock:
            outcome = _trickle(sock, stop)
        with lock:
            results.append(outcome)

    started = time.monotonic()
    threads = [threading.Thread(target=slow, args=(k,), daemon=True) for k in keys_a for _ in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)  # the slow ones take what slots they get (the answers below are the test)
        base = f"http://{server[0]}:{server[1]}"
        with httpx.Client(base_url=base, timeout=30) as other:
            response = upload(other, {"X-API-Key": key_b}, envelope_b, make_pdf())
            assert response.status_code == 201, response.text
            read = other.get(f"{API}/envelopes/{envelope_b}", headers={"X-API-Key": key_b})
            assert read.status_code == 200, read.text
        for t in threads:
            t.join(GRACE + 15)
    finally:
        stop.set()
    elapsed = time.monotonic() - started
    assert Counter(code for _, code in results) == {"Request.BodyTimeout": 12, "Request.TooManyUploads": 4}
    assert {status for status, code in results if code == "Request.BodyTimeout"} == {408}
    assert elapsed < GRACE + 10  # the trickles' pace ran out, not the test's patience
    assert list(spool_dir().glob("upload-*")) == []  # every spooled byte is gone
    with httpx.Client(base_url=f"http://{server[0]}:{server[1]}", timeout=30) as again:
        response = upload(again, {"X-API-Key": keys_a[0]}, envelope_a, make_pdf())
    assert response.status_code == 201, response.text  # the slots came back


def create_envelope_over(server: tuple[str, int], raw_key: str) -> str:
    with httpx.Client(base_url=f"http://{server[0]}:{server[1]}", timeout=30) as http:
        return create_envelope(http, {"X-API-Key": raw_key})


def test_org_over_its_share_is_refused_with_the_org_setting(server: tuple[str, int], make_key: Any) -> None:
    org_a, key = make_key()
    keys = [key] + [make_key(org_id=org_a)[1] for _ in range(3)]
    envelope_id = create_envelope_over(server, key)
    path = f"{API}/envelopes/{envelope_id}/vault-in-upload"
    held = [
        send_head(server, path, {"X-API-Key": k, "Content-Type": "application/pdf"}, 1_000_000, b"%")
        for k in keys
        for _ in range(3)
    ]
    try:
        time.sleep(0.5)
        with send_head(server, path, {"X-API-Key": keys[3], "Content-Type": "application/pdf"}, 10, b"%") as extra:
            status, headers, body = read_answer(extra)
        assert (status, body["code"]) == (429, "Request.TooManyUploads")
        assert body["details"]["setting"] == "EVAULT_MAX_UPLOADS_PER_ORG" and body["details"]["limit"] == 12
        assert int(headers["retry-after"]) >= 1
    finally:
        for sock in held:
            sock.close()


def test_a_body_at_an_honest_pace_outlasts_the_header_deadline(server: tuple[str, int], make_key: Any) -> None:
    _, key = make_key()
    envelope_id = create_envelope_over(server, key)
    pdf = make_pdf()
    pieces = [pdf[i : i + len(pdf) // 4 + 1] for i in range(0, len(pdf), len(pdf) // 4 + 1)]
    headers = {"X-API-Key": key, "Content-Type": "application/pdf"}
    started = time.monotonic()
    with send_head(server, f"{API}/envelopes/{envelope_id}/vault-in-upload", headers, len(pdf)) as sock:
        for piece in pieces:
            time.sleep(0.6)
            sock.sendall(piece)
        sock.settimeout(30)
        status, _, body = read_answer(sock)
    assert time.monotonic() - started > 2 * HEADER_TIMEOUT
    assert status == 201, body


@EACH_PARSER
def test_connections_with_unfinished_headers_are_closed_after_the_deadline(server: tuple[str, int]) -> None:
    silent = [socket.create_connection(server, timeout=10) for _ in range(50)]
    partial = [socket.create_connection(server, timeout=10) for _ in range(150)]
    for sock in partial:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    started = time.monotonic()
    try:
        with httpx.Client(base_url=f"http://{server[0]}:{server[1]}", timeout=10) as http:
            assert http.get("/health").status_code == 200  # the others are served meanwhile
        for sock in silent + partial:
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            assert data.startswith(b"HTTP/1.1 408 "), data[:80]
            assert b'"Request.HeaderTimeout"' in data
        assert time.monotonic() - started < HEADER_TIMEOUT + 5
    finally:
        for sock in silent + partial:
            sock.close()


def _send_until_answered(socks: list[socket.socket], byte: bytes, pause: float, after: float = 0.5) -> None:
    """A byte on each socket, again and again, whether or not the server still reads, until it has its answer
    waiting and ``after`` seconds more (within the server's linger): the deadline fires while the client
    sends, and bytes keep arriving once the server has answered. Counted by answers, not by a fixed time: on a
    loaded machine the server may reach a request's deadline late (a body's pace starts once its key is
    checked, a database read)."""
    waiting = select.poll()
    by_fd = {sock.fileno(): sock for sock in socks}
    for fd in by_fd:
        waiting.register(fd, select.POLLIN)
    answered: dict[int, float] = {}
    given_up = time.monotonic() + 60
    while time.monotonic() < given_up:
        now = time.monotonic()
        sending = [fd for fd in by_fd if now - answered.get(fd, now) < after]
        if not sending:
            return
        for fd in sending:
            try:
                by_fd[fd].send(byte)
            except OSError:
                pass  # the server has stopped reading: what it sent is still to be read
        for fd, _ in waiting.poll(0):
            answered[fd] = time.monotonic()
            waiting.unregister(fd)
        time.sleep(pause)


def _answers_read_to_a_clean_end(socks: list[socket.socket], code: str, status: int = 408) -> None:
    """Half-close each socket and read it to its end: each holds a ``status`` with ``code``, and none was reset."""
    resets = 0
    for sock in socks:
        data = b""
        try:
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                data += chunk
        except OSError:  # reset: ECONNRESET, or ENOTCONN from the shutdown
            resets += 1
            continue
        assert data.startswith(f"HTTP/1.1 {status} ".encode()), data[:80]
        assert f'"{code}"'.encode() in data
    assert resets == 0, f"{resets} of {len(socks)} connections reset"


@EACH_PARSER
def test_clients_still_sending_when_the_deadline_fires_read_the_408_and_a_clean_end(
    server: tuple[str, int],
) -> None:
    """Bytes that reach a socket closed with input unread make its kernel answer with a reset, and the reset
    made the client's recv fail after the 408: the server now half-closes and drops input before it closes."""
    socks = [socket.create_connection(server, timeout=10) for _ in range(100)]
    try:
        for sock in socks:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        _send_until_answered(socks, b"x", 0)  # as fast as it goes, across the deadline
        _answers_read_to_a_clean_end(socks, "Request.HeaderTimeout")
    finally:
        for sock in socks:
            sock.close()


@EACH_PARSER
def test_bodies_still_trickling_when_their_pace_runs_out_read_the_408_and_a_clean_end(
    server: tuple[str, int], make_key: Any
) -> None:
    """The body's 408 closes the connection too (the rest of a too-slow body is not worth reading). Closed at
    once, with the client's bytes still arriving, the socket answered them with a reset: the server now
    lingers after that close as after the header deadline's."""
    _, raw_key = make_key()
    headers = {"X-API-Key": raw_key, "Content-Type": "application/json"}
    socks = [send_head(server, f"{API}/envelopes", headers, 5_000) for _ in range(50)]
    try:
        _send_until_answered(socks, b" ", 0.02)  # ~50 bytes a second each, well under the pace, across it
        _answers_read_to_a_clean_end(socks, "Request.BodyTimeout")
    finally:
        for sock in socks:
            sock.close()


@EACH_PARSER
def test_bytes_that_are_not_http_get_the_apis_400_and_a_clean_end(server: tuple[str, int]) -> None:
    """uvicorn answered its parser's refusals itself, in plain text with no code, and closed at once: a client
    still sending could read a reset instead."""
    with socket.create_connection(server, timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), data[:80]
    answer = json.loads(body)
    assert answer["code"] == "Request.Malformed" and answer["details"] == {}
    assert f"x-request-id: {answer['request_id']}".encode() in head.lower()
    assert answer["request_id"].startswith("req_") and len(answer["request_id"]) == 36
    socks = [socket.create_connection(server, timeout=10) for _ in range(50)]
    try:
        for sock in socks:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        _send_until_answered(socks, b"x", 0.01)
        _answers_read_to_a_clean_end(socks, "Request.Malformed", status=400)
    finally:
        for sock in socks:
            sock.close()


@EACH_PARSER
def test_keep_alive_connection_gets_a_new_deadline_after_each_response(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, _, _ = read_answer(sock)
        assert status == 200
        sock.sendall(b"GET /health HTTP/1.1\r\n")  # the next request's headers stall
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 408 "), data[:80]


# --- the slots' fair share, in-process ---------------------------------------------------------------------------


def _refuse(full: Full, limit: int) -> EvaultError:
    return Unavailable("Test.Full", full, limit=limit)


def test_an_org_alone_may_use_more_than_its_share_but_not_beside_others() -> None:
    slots = Slots(total=4, per_key=4, per_org=3)
    with slots.slot(None, _refuse, org="a"), slots.slot(None, _refuse, org="a"), slots.slot(None, _refuse, org="a"):
        with pytest.raises(Unavailable) as alone:
            with slots.slot(None, _refuse, org="a"):
                pass
        assert alone.value.message == "org" and alone.value.details["limit"] == 3
        with slots.slot(None, _refuse, org="b"):  # the slot org "a" could not take
            with pytest.raises(Unavailable) as beside:
                with slots.slot(None, _refuse, org="a"):
                    pass
            assert beside.value.details["limit"] == 2  # four slots between two organisations
            with pytest.raises(Unavailable) as full:
                with slots.slot(None, _refuse, org="c"):
                    pass
            assert full.value.message == "total"


def test_a_freed_slot_goes_to_the_org_below_its_share() -> None:
    slots = Slots(total=2, per_key=2)
    order: list[str] = []
    releases = [threading.Event() for _ in range(4)]

    def hold_one(org: str, wait: float, release: threading.Event) -> None:
        with slots.slot(None, _refuse, wait_seconds=wait, org=org):
            order.append(org)
            release.wait(10)

    first = [threading.Thread(target=hold_one, args=("a", 0, releases[i])) for i in range(2)]
    for t in first:
        t.start()
    deadline = time.monotonic() + 10
    while len(order) < 2:
        assert time.monotonic() < deadline, "the first two did not get their slots"
        time.sleep(0.01)
    waiting = [threading.Thread(target=hold_one, args=(org, 10, releases[2 + i])) for i, org in enumerate("ab")]
    for t in waiting:
        t.start()
        time.sleep(0.2)  # "a" waits first
    releases[0].set()  # one slot frees
    deadline = time.monotonic() + 10
    while len(order) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        assert order[2:] == ["b"]  # "a", holding one of two beside "b", is at its share: it waits behind "b"
    finally:
        for release in releases:
            release.set()
        for t in first + waiting:
            t.join(10)
    assert order == ["a", "a", "b", "a"]
