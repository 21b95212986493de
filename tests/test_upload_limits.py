"""Limits at the edge, against a real HTTP server (uvicorn on loopback), on SQLite and PostgreSQL alike.

- the API key is checked from the headers before any body is read: an unauthenticated request announcing a
  10 GB body and sending none gets its 401 (a raw socket, so nothing is buffered by a client library);
- body limits per route: a JSON route takes EVAULT_MAX_JSON_BYTES, the upload routes EVAULT_MAX_UPLOAD_BYTES;
  an announced Content-Length over the limit is 413 before the body is read, a chunked body over it is 413;
- uploads in flight are capped per key (429 Request.TooManyUploads) and in total (503 Request.ServerBusy),
  both with Retry-After, and the slots come back when a client goes away;
- a vault-in is streamed: a 20 MiB upload is stored byte-exact, hashed once in this process, and put with
  UNSIGNED-PAYLOAD (botocore did not hash it again);
- the memory of a server process with 4 concurrent 30 MiB uploads stays bounded (a subprocess server).
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import API, create_envelope, read_answer, send_head, serving, upload
from tests.pdf_factory import make_pdf
from tests.ports import aux_port, port_range
from vault.api.app import create_app
from vault.runtime import Runtime

MiB = 1024 * 1024


@pytest.fixture
def vault_env(vault_env: dict[str, str]) -> dict[str, str]:
    return {
        **vault_env,
        "EVAULT_MAX_UPLOAD_BYTES": str(40 * MiB),
        "EVAULT_MAX_UPLOADS_PER_KEY": "2",
        "EVAULT_MAX_UPLOADS": "3",
    }


@pytest.fixture
def server(runtime: Runtime) -> Iterator[tuple[str, int]]:
    """The app served by uvicorn on a loopback port of this test's range, in a thread."""
    with serving(create_app(runtime), runtime.settings.edge, *port_range("upload_limits")) as address:
        yield address


def test_unauthenticated_huge_post_gets_401_without_its_body_being_read(server: tuple[str, int]) -> None:
    for path, headers in [
        (f"{API}/envelopes", {"Content-Type": "application/json"}),
        (f"{API}/envelopes/env_x/vault-in-upload", {"Content-Type": "application/pdf"}),
        (f"{API}/envelopes", {"Content-Type": "application/json", "X-API-Key": "lk_" + "x" * 43}),
    ]:
        with send_head(server, path, headers, 10 * 1024**3, b"{") as sock:
            status, _, body = read_answer(sock)
        assert status == 401, body
        assert body["code"] in {"Auth.MissingKey", "Auth.UnknownKey"}


def test_key_without_the_scope_gets_403_before_the_body(server: tuple[str, int], make_key: Any) -> None:
    _, raw = make_key(["envelopes:read"])
    headers = {"Content-Type": "application/pdf", "X-API-Key": raw}
    with send_head(server, f"{API}/envelopes/env_x/vault-in-upload", headers, 10 * 1024**3) as sock:
        status, _, body = read_answer(sock)
    assert (status, body["code"]) == (403, "Auth.InsufficientScope")


def test_announced_length_over_the_routes_limit_is_413_at_once(server: tuple[str, int], tenant: Any) -> None:
    _, key = tenant
    json_headers = {**key, "Content-Type": "application/json"}
    with send_head(server, f"{API}/envelopes", json_headers, 64 * 1024 + 1) as sock:
        status, _, body = read_answer(sock)
    assert (status, body["code"], body["details"]["setting"]) == (413, "Request.TooLarge", "EVAULT_MAX_JSON_BYTES")
    pdf_headers = {**key, "Content-Type": "application/pdf"}
    with send_head(server, f"{API}/envelopes/env_x/vault-in-upload", pdf_headers, 40 * MiB + 1) as sock:
        status, _, body = read_answer(sock)
    assert (status, body["details"]["setting"]) == (413, "EVAULT_MAX_UPLOAD_BYTES")
    # A JSON route never takes the upload limit: 1 MiB announced for vault-out is refused.
    with send_head(server, f"{API}/envelopes/env_x/vault-out", json_headers, MiB) as sock:
        assert read_answer(sock)[0] == 413


def test_chunked_json_body_over_the_limit_is_413(server: tuple[str, int], tenant: Any) -> None:
    _, key = tenant

    def chunks() -> Iterator[bytes]:
        yield b'{"kind":"paper","title":"'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    url = f"http://{server[0]}:{server[1]}{API}/envelopes"
    response = httpx.post(url, content=chunks(), headers={**key, "Content-Type": "application/json"})
    assert (response.status_code, response.json()["code"]) == (413, "Request.TooLarge")


def test_uploads_in_flight_are_capped_per_key_and_in_total(server: tuple[str, int], client: Any, make_key: Any) -> None:
    _, key_a = make_key()
    _, key_b = make_key()  # three organisations, each within its share (fairness: tests/test_slow_clients.py)
    _, key_c = make_key()
    envelope_id = create_envelope(client, {"X-API-Key": key_a})
    path = f"{API}/envelopes/{envelope_id}/vault-in-upload"

    def hold(key: str) -> socket.socket:
        return send_head(server, path, {"X-API-Key": key, "Content-Type": "application/pdf"}, MiB, b"%PDF-")

    held = [hold(key_a), hold(key_a)]
    time.sleep(0.5)  # let the server take their slots (not a timing claim: the answers below are the test)
    with hold(key_a) as third:
        status, headers, body = read_answer(third)
    assert (status, body["code"], headers["retry-after"]) == (429, "Request.TooManyUploads", "1")
    held.append(hold(key_b))
    time.sleep(0.5)
    with hold(key_c) as fourth:
        status, headers, body = read_answer(fourth)
    assert (status, body["code"]) == (503, "Request.ServerBusy")
    assert int(headers["retry-after"]) >= 1
    for sock in held:
        sock.close()
    time.sleep(1.0)  # the server notices the disconnects and frees the slots
    pdf = make_pdf()
    response = upload(client, {"X-API-Key": key_a}, envelope_id, pdf)
    assert response.status_code == 201, response.text


def test_vault_in_is_streamed_hashed_once_and_put_unsigned(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    pdf = make_pdf(size_bytes=20 * MiB)
    sent: list[str] = []
    runtime.authoritative.client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: sent.append(request.headers["X-Amz-Content-SHA256"].decode())
    )
    hashed = [0]
    real_sha256 = hashlib.sha256

    class Counting:
        def __init__(self, data: bytes = b"") -> None:
            self._h = real_sha256(data)
            hashed[0] += len(data)

        def update(self, data: bytes) -> None:
            hashed[0] += len(data)
            self._h.update(data)

        def hexdigest(self) -> str:
            return self._h.hexdigest()

        def digest(self) -> bytes:
            return self._h.digest()

    expected = real_sha256(pdf).hexdigest()
    hashlib.sha256 = Counting  # type: ignore[assignment,misc]
    try:
        response = upload(client, headers, envelope_id, pdf, sha256=expected)
    finally:
        hashlib.sha256 = real_sha256
    assert response.status_code == 201, response.text
    (doc,) = response.json()["vault"]["documents"]
    assert doc["sha256"] == expected and doc["size"] == len(pdf)
    assert sent == ["UNSIGNED-PAYLOAD"]
    assert len(pdf) <= hashed[0] < 1.5 * len(pdf), hashed[0]  # once, plus small things (log entries)
    stored = runtime.authoritative.read(f"{_key(runtime, envelope_id)}", doc["version_id"])
    assert stored == pdf


def _key(runtime: Runtime, envelope_id: str) -> str:
    from sqlmodel import select

    from storage.models import VaultedDocument, VaultRecord

    with runtime.db.read_session() as session:
        record = session.exec(select(VaultRecord).where(VaultRecord.envelope_id == envelope_id)).one()
        doc = session.exec(select(VaultedDocument).where(VaultedDocument.record_id == record.id)).one()
    return doc.s3_key


SERVE = """
import sys, uvicorn
from storage.settings import Settings
from vault.api.app import create_app
from vault.api.server import uvicorn_config
from vault.runtime import open_runtime
runtime = open_runtime(Settings.from_env())
config = uvicorn_config(create_app(runtime), runtime.settings.edge, host="127.0.0.1", port=int(sys.argv[1]))
uvicorn.Server(config).run()
"""


def _peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_memory_of_concurrent_large_uploads_is_bounded(vault_env: dict[str, str], tenant: Any) -> None:
    """4 concurrent 30 MiB uploads: the server's peak RSS grows by less than 48 MiB.

    Held whole, as before, each in-flight 49 MiB upload cost about 90 MiB, so 4 of these would add ~220 MiB.
    Streamed, each costs its 1 MiB spool and socket buffers, and large files are vetted one at a time: pypdf
    holds the file's largest stream (here the whole 30 MiB padding) while it parses it. So: one body, 4 spools,
    and ~14 MiB for buffers and the allocator. (Without the fixed mmap threshold, vault/allocator.py, glibc
    kept freed bodies in its arenas: 92 MiB measured.)
    """
    _, key = tenant
    port = aux_port("upload_limits")
    env = {**os.environ, **vault_env, "PYTHONPATH": os.getcwd()}
    env.update({"EVAULT_MAX_UPLOADS_PER_KEY": "4", "EVAULT_MAX_UPLOADS": "16"})
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(port)], env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=120) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if http.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
                time.sleep(0.2)
            headers = key
            envelopes = [create_envelope(http, headers) for _ in range(5)]
            assert upload(http, headers, envelopes[0], make_pdf(size_bytes=2 * MiB)).status_code == 201  # warm up
            before = _peak_rss(proc.pid)
            pdfs = [make_pdf(size_bytes=30 * MiB, text=f"doc {i}") for i in range(4)]
            results: list[int] = [0] * 4

            def send(i: int) -> None:
                results[i] = upload(http, headers, envelopes[i + 1], pdfs[i]).status_code

            threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(300)
            after = _peak_rss(proc.pid)
        assert results == [201] * 4
        growth = after - before
        print(f"peak RSS before {before / MiB:.0f} MiB, after {after / MiB:.0f} MiB, growth {growth / MiB:.0f} MiB")
        assert growth < 48 * MiB, growth / MiB
    finally:
        proc.terminate()
        proc.wait(30)
