"""Streams that are small once but large as used cannot take the API process's memory, and what vault-in
accepts can be copied.

Each hostile shape (a /Contents array naming one stream many times, one XObject drawn many times, forms nested
with a fan-out, a form that draws itself, many pages each making its own form of one stream, many annotations)
is either refused with a 4xx and nothing vaulted, or vaulted and then copied (never the 500 ``Copy.TooComplex``),
on SQLite and PostgreSQL. And a real ``evault serve``, sent every shape four at a time, keeps its peak resident
memory within ``RSS_BOUND`` of where it was, survives, and serves another tenant afterwards.
"""

from __future__ import annotations

import io
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pypdf import PdfReader

from tests import hostile_pdfs
from tests.helpers import API, create_envelope, evault_serve, free_port, upload
from vault.pdf_uses import CHUNK, UseCounter

MiB = 1024 * 1024
# The bound in docs/design/claim-then-record.md: an upload of any shape moves the API's peak RSS at most this
# past its spool (and, for a file over 8 MiB, the one large stream pypdf holds while parsing; these files are all tiny).
RSS_BOUND = 64 * MiB

Shape = tuple[str, Callable[[], bytes], str | None]
# (name, file, the refusal's code, or None for "accepted, then copyable")
SHAPES: list[Shape] = [
    ("contents x40 of 8 MB", lambda: hostile_pdfs.repeated_contents(40, 8_000_000), "Document.TooComplex"),
    ("contents x1000 of 8 MB", lambda: hostile_pdfs.repeated_contents(1000, 8_000_000), "Document.TooComplex"),
    ("contents x3 of 1 MB (in-process)", lambda: hostile_pdfs.repeated_contents(3, 1_000_000), None),
    ("contents x6 of 1 MB (stamper child)", lambda: hostile_pdfs.repeated_contents(6, 1_000_000), None),
    ("xobject drawn 10,000 x 1 MB", lambda: hostile_pdfs.repeated_xobject(10_000, 1_000_000), "Document.TooComplex"),
    ("xobject drawn 100 x 10 kB", lambda: hostile_pdfs.repeated_xobject(100, 10_000), None),
    ("forms 4^20 deep", hostile_pdfs.nested_forms, "Document.TooComplex"),
    ("forms 4^3 deep", lambda: hostile_pdfs.nested_forms(3, 4, 1000), None),
    ("form that draws itself", hostile_pdfs.self_drawing_form, "Document.Malformed"),
    ("100 page boxes x 4 MB", lambda: hostile_pdfs.many_pages_sharing(100, 4_000_000), "Document.TooComplex"),
    ("100 page boxes x 10 kB", lambda: hostile_pdfs.many_pages_sharing(100, 10_000), None),
    ("3,000 links (stamper child)", lambda: hostile_pdfs.many_links(3000), None),
    ("image drawn 10,000 x 120 kB (stamper child)", hostile_pdfs.repeated_image, None),
]


@pytest.mark.s3
@pytest.mark.parametrize(("name", "make", "refusal"), SHAPES, ids=[shape[0] for shape in SHAPES])
def test_shape_is_refused_with_4xx_or_vaulted_and_copyable(
    client: Any, tenant: tuple[str, dict[str, str]], name: str, make: Callable[[], bytes], refusal: str | None
) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    response = upload(client, headers, envelope_id, make())
    if refusal is not None:
        assert (response.status_code, response.json()["code"]) == (400, refusal), response.text
        envelope = client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()
        assert envelope["vault"]["state"] == "not_vaulted", envelope
        return
    assert response.status_code == 201, response.text
    copy = client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers)
    assert copy.status_code == 200, copy.text


def _uses(data: bytes, limit: int = 1 << 40) -> int:
    counter = UseCounter(limit, lambda: None)
    counter.count_pages(PdfReader(io.BytesIO(data)))
    return counter.total


def _drawing(content: bytes, name: bytes = b"/X0") -> bytes:
    """One page whose content (stored unfiltered) may draw the 1,000-byte form ``name``."""
    form = hostile_pdfs.stream(b"/Type /XObject /Subtype /Form /BBox [0 0 612 792]", b" " * 1000)
    return hostile_pdfs.assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /XObject << "
            + name
            + b" 5 0 R >> >> /Contents 4 0 R >>",
            hostile_pdfs.stream(b"", content),
            form,
        ]
    )


@pytest.mark.once
def test_each_use_is_counted_once_across_chunks_and_escapes() -> None:
    """A draw straddling the 1 MiB decoding step counts once, an escaped name is the same name, a comment is
    whitespace; a name the resources do not define, and a name that runs into "Do", draw nothing."""
    straddling = b" " * (CHUNK - 3) + b"/X0 Do " + b"q /X0 Do Q " * 2
    assert _uses(_drawing(straddling)) == len(straddling) + 3 * 1000
    escaped = b"/X#30 Do /X0%a comment\nDo"
    assert _uses(_drawing(escaped)) == len(escaped) + 2 * 1000
    undefined = b"/Y9 Do /X0Do"
    assert _uses(_drawing(undefined)) == len(undefined)


@pytest.mark.once
def test_a_count_over_the_limit_stops_early() -> None:
    """A stream named 1,000 times is decoded only up to the limit's thousandth, not 8 GB's worth."""
    counter = UseCounter(256 * MiB, lambda: None)
    counter.count_pages(PdfReader(io.BytesIO(hostile_pdfs.repeated_contents(1000, 8_000_000))))
    assert counter.over() and counter.sizes == {}


@pytest.mark.once
def test_images_drawn_are_totalled_apart_from_content() -> None:
    """An image drawn 10,000 times is no reason to refuse (nothing decodes it per use but a renderer), but it
    is counted, so its rehearsal leaves this process for the limited stamper."""
    counter = UseCounter(256 * MiB, lambda: None)
    counter.count_pages(PdfReader(io.BytesIO(hostile_pdfs.repeated_image())))
    assert not counter.over() and counter.total < MiB
    assert counter.drawn > 256 * MiB


# --- A real server process under the bombs -----------------------------------------------------------------


def _rss(pid: int) -> tuple[int, int]:
    """(VmHWM, VmRSS) of the process, in bytes: its peak and its current resident memory."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                values[key] = int(rest.split()[0]) * 1024
    return values["VmHWM"], values["VmRSS"]


@pytest.fixture
def server(vault_env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], httpx.Client]]:
    """``evault serve`` in a subprocess, on this test's database and store, on a port of this helper's range."""
    base = int(os.environ.get("EVAULT_TEST_SERVE_PORT_BASE", "23400"))
    port = free_port(base + 50, base + 99)
    with evault_serve(vault_env, port, EVAULT_MAX_UPLOADS_PER_KEY="4", EVAULT_MAX_UPLOADS="16") as served:
        yield served


@pytest.mark.s3
def test_bombs_do_not_move_the_servers_memory_and_others_are_served(
    server: tuple[subprocess.Popen[bytes], httpx.Client], make_key: Any
) -> None:
    """Four at a time from one key, every shape twice: peak RSS grows by less than RSS_BOUND.

    Before per-use counting, one 10 KB ``contents x40`` file took a process past 600 MiB."""
    proc, http = server
    _, attacker = make_key()
    _, other = make_key()
    attacker_headers, other_headers = {"X-API-Key": attacker}, {"X-API-Key": other}
    warm = create_envelope(http, attacker_headers)
    assert upload(http, attacker_headers, warm, hostile_pdfs.repeated_contents(3, 1_000_000)).status_code == 201
    before, _ = _rss(proc.pid)
    bombs = [make() for _, make, _ in SHAPES] * 2
    expected = [201 if refusal is None else 400 for _, _, refusal in SHAPES] * 2
    envelopes = [create_envelope(http, attacker_headers) for _ in bombs]
    statuses: list[int] = [0] * len(bombs)
    lock = threading.Semaphore(4)

    def send(i: int) -> None:
        with lock:
            statuses[i] = upload(http, attacker_headers, envelopes[i], bombs[i]).status_code

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bombs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    after, now = _rss(proc.pid)
    assert proc.poll() is None, "the server died"
    assert statuses == expected, statuses
    print(f"peak RSS {before / MiB:.0f} -> {after / MiB:.0f} MiB (now {now / MiB:.0f} MiB)")
    assert after - before < RSS_BOUND, (after - before) / MiB
    envelope_id = create_envelope(http, other_headers)
    assert http.get(f"{API}/envelopes/{envelope_id}", headers=other_headers).status_code == 200
