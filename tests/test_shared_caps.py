"""Caps that hold across processes: upload and stamping slots per API key and per organisation are slot leases in
the database (vault/slot_leases.py), on SQLite and PostgreSQL alike.

- taking, refusing at the cap, giving back; two holders (two processes' worth) share one cap; a cap of
  several is all-or-nothing;
- racers for one cap get exactly the cap (a real race on PostgreSQL);
- an expired lease is taken over, and its old holder can neither release nor renew it away;
- a holder process that renews keeps its slots; SIGKILLed, its slots are free again within the lease;
- (PostgreSQL) ``evault serve --workers 2``: 2K slow uploads from one key, K on each worker's connections, get
  exactly K admitted and K refused with 429 ``Request.TooManyUploads``, while another key uploads; once the
  held ones go away, the key uploads again.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from compliance.errors import EvaultError, RateLimited
from storage.db import Database
from storage.models import SlotLease
from tests.helpers import API, PG_URL, create_envelope, read_answer, server_port, together, upload
from tests.pdf_factory import make_pdf
from tests.test_vault_in_cost import counted
from tests.test_workers import _children, _serve, _wait_ready
from vault.runtime import Runtime
from vault.slot_leases import Cap, SlotLeases, Ticket
from vault.slots import Full

ROOT = Path(__file__).resolve().parent.parent


def _refuse(full: Full, limit: int) -> EvaultError:
    return RateLimited("Test.Full", full, limit=limit)


def test_slots_are_taken_up_to_the_cap_and_given_back(db: Database) -> None:
    one, two = SlotLeases(db), SlotLeases(db)  # two processes' holders
    first = one.take("upload-key", "key_a", 2)
    second = two.take("upload-key", "key_a", 2)
    assert first is not None and second is not None and first.slot != second.slot
    assert one.take("upload-key", "key_a", 2) is None and two.take("upload-key", "key_a", 2) is None
    other = one.take("upload-key", "key_b", 2)  # another key, and another pool, are counted apart
    assert other is not None and two.take("upload-org", "key_a", 1) is not None
    one.give_back(first)
    again = two.take("upload-key", "key_a", 2)
    assert again is not None and again.slot == first.slot
    assert one.live("upload-key", "key_a") == {first.slot, second.slot}


def test_a_cap_of_several_is_all_or_nothing(db: Database) -> None:
    leases = SlotLeases(db)
    caps = [Cap("upload-key", "key_a", 2, "key"), Cap("upload-org", "org_a", 1, "org")]
    held = leases.acquire(caps, _refuse)
    with pytest.raises(RateLimited) as refused:
        leases.acquire(caps, _refuse)
    assert (refused.value.message, refused.value.details["limit"]) == ("org", 1)
    assert leases.live("upload-key", "key_a") == {held[0].slot}  # the key slot it took was given back
    leases.release(held)
    assert leases.live("upload-key", "key_a") == set() and leases.live("upload-org", "org_a") == set()


def test_a_cap_lost_to_a_racer_rolls_back_the_slots_taken_before_it(db: Database) -> None:
    """The caps' slots are taken in one transaction: when the second is gone by the time it is taken (a racer
    won it after the read), the first is not left behind, and nothing stays held or waits to be given back."""
    leases, racer = SlotLeases(db), SlotLeases(db)
    won = racer.take("upload-org", "org_a", 1)
    assert won is not None
    leases._live = lambda keys, now: {key: set() for key in keys}  # type: ignore[method-assign]  # read before it
    caps = [Cap("upload-key", "key_a", 2, "key"), Cap("upload-org", "org_a", 1, "org")]
    with pytest.raises(RateLimited) as refused:
        leases.acquire(caps, _refuse)
    assert refused.value.message == "org"
    del leases._live
    assert leases.live("upload-key", "key_a") == set() and leases.live("upload-org", "org_a") == {won.slot}
    assert not leases._held and not leases._unreleased
    racer.give_back(won)


def test_several_caps_are_read_taken_and_given_back_in_three_transactions(db: Database) -> None:
    leases = SlotLeases(db)
    caps = [Cap("upload-key", "key_a", 2, "key"), Cap("upload-org", "org_a", 3, "org")]
    leases.release(leases.acquire(caps, _refuse))  # the engines' first connections are not counted
    with counted(db) as seen:
        held = leases.acquire(caps, _refuse)
        assert {(t.pool, t.scope) for t in held} == {("upload-key", "key_a"), ("upload-org", "org_a")}
        leases.release(held)
    steps = [line.split()[1] if line.startswith("SQL ") else line for line in seen]
    assert steps == ["BEGIN", "SELECT", "BEGIN", "INSERT", "INSERT", "COMMIT", "BEGIN", "DELETE", "COMMIT"], seen
    assert leases.live("upload-key", "key_a") == set() and leases.live("upload-org", "org_a") == set()


def test_racers_for_one_cap_get_exactly_the_cap(db: Database) -> None:
    holders = [SlotLeases(db) for _ in range(8)]
    results = together(*(lambda h=h: h.take("stamp-org", "org_a", 3) for h in holders))
    taken = [r for r in results if isinstance(r, Ticket)]
    assert len(taken) == 3 and results.count(None) == 5, results
    assert sorted(t.slot for t in taken) == [0, 1, 2]
    for holder, result in zip(holders, results, strict=True):
        if isinstance(result, Ticket):
            holder.give_back(result)


def test_an_expired_lease_is_taken_over_and_its_old_holder_cannot_free_it(db: Database) -> None:
    now = time.time()
    dead, alive = SlotLeases(db, ttl=3000), SlotLeases(db, ttl=3000)  # no renewal round within this test
    stale = dead.take("upload-key", "key_a", 1, now=now)
    assert stale is not None
    assert alive.take("upload-key", "key_a", 1, now=now + 2999) is None
    fresh = alive.take("upload-key", "key_a", 1, now=now + 3001)
    assert fresh is not None and fresh.slot == stale.slot and fresh.ticket != stale.ticket
    assert dead.renew(now=now + 3002) == 0  # the old holder's renewal finds its lease gone
    dead.give_back(stale)  # and its release leaves the new holder's row
    assert alive.live("upload-key", "key_a", now=now + 3002) == {fresh.slot}
    alive.give_back(fresh)


HOLD = """
import sys, time
from sqlmodel import select

from storage.db import Database
from storage.models import SlotLease
from vault.slot_leases import SlotLeases
db = Database(sys.argv[1])  # kept: the leases refer to it weakly
leases = SlotLeases(db, ttl=float(sys.argv[2]))
assert leases.take("upload-key", "key_a", 2) is not None and leases.take("upload-key", "key_a", 2) is not None
print("held", flush=True)
time.sleep(600)
"""


def test_a_killed_holders_slots_come_back_within_the_lease(db: Database) -> None:
    ttl = 2.0
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, db.url, str(ttl)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        here = SlotLeases(db)
        time.sleep(2 * ttl)  # past its first lease: the holder's renewals keep its slots
        assert here.take("upload-key", "key_a", 2) is None
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        killed = time.monotonic()
        while (ticket := here.take("upload-key", "key_a", 2)) is None:
            assert time.monotonic() - killed < ttl + 5, "a dead holder's slot did not come back"
            time.sleep(0.1)
        here.give_back(ticket)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


# --- two worker processes share the per-key cap (PostgreSQL) ------------------------------------------------------

K = 2
ESTABLISHED = "01"


def _owners(pids: list[int], port: int) -> dict[int, int]:
    """For each established connection to ``port``: the client's port -> the process holding the server side."""
    by_inode: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.rsplit(":", 1)[1], 16) == port and fields[3] == ESTABLISHED:
                by_inode[fields[9]] = int(remote.rsplit(":", 1)[1], 16)
    owners = {}
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except FileNotFoundError:  # a passing child of the parent (multiprocessing's own), gone
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            inode = target[len("socket:[") : -1] if target.startswith("socket:[") else ""
            if inode in by_inode:
                owners[by_inode[inode]] = pid
    return owners


def _keep_alive(port: int) -> socket.socket:
    """A connection some worker has accepted (it answered a request on it), kept open for the next one."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # reads the database and the store: a while
    assert read_answer(sock)[0] == 200
    return sock


@pytest.fixture
def two_workers(vault_env: dict[str, str]) -> Iterator[tuple[int, int]]:
    port = server_port()
    env = {
        **vault_env,
        "EVAULT_HOST": "127.0.0.1",
        "EVAULT_PORT": str(port),
        "EVAULT_MAX_UPLOADS_PER_KEY": str(K),
        "EVAULT_MAX_UPLOADS": "8",
        "EVAULT_BODY_GRACE_SECONDS": "120",  # the held uploads stay held for the test
    }
    proc = _serve(env, "--workers", "2")
    try:
        _wait_ready(proc, port, timeout=300)  # two workers start on a loaded machine
        yield port, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(not PG_URL, reason="more than one worker needs PostgreSQL: this runs in the PostgreSQL pass")
def test_two_workers_share_one_keys_upload_cap(two_workers: tuple[int, int], runtime: Runtime, make_key: Any) -> None:
    port, parent = two_workers
    _, key_a = make_key()
    _, key_b = make_key()
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=60) as http:
        envelope_a = create_envelope(http, {"X-API-Key": key_a})
        envelope_b = create_envelope(http, {"X-API-Key": key_b})
    spare: list[socket.socket] = []
    chosen: dict[int, list[socket.socket]] = {}  # the parent's children: two workers (and multiprocessing's own)
    try:
        deadline = time.monotonic() + 300  # the second worker may still be starting when the first is ready
        while [len(held) for held in chosen.values()] != [K, K] and time.monotonic() < deadline:
            batch = together(*(lambda: _keep_alive(port) for _ in range(16)))  # opened at once: both get some
            owners = _owners(_children(parent), port)  # read anew: a worker may start after the first is ready
            for sock in (s for s in batch if isinstance(s, socket.socket)):  # (one too slow on a loaded machine: next)
                owner = owners.get(sock.getsockname()[1])
                held = spare if owner is None else chosen.setdefault(owner, [])
                (held if len(held) < K else spare).append(sock)
            for sock in spare:
                sock.close()
            spare.clear()
        counts = {pid: len(held) for pid, held in chosen.items()}
        assert list(counts.values()) == [K, K], (counts, _children(parent))
        uploads = [sock for held in chosen.values() for sock in held]
        head = (
            f"POST {API}/envelopes/{envelope_a}/vault-in-upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"X-API-Key: {key_a}\r\nContent-Type: application/pdf\r\nContent-Length: 1000000\r\n\r\n%PDF-"
        ).encode()
        together(*(lambda s=s: s.sendall(head) for s in uploads))  # 2K slow uploads at once, K on each worker

        def answer(sock: socket.socket) -> tuple[int, str, str] | None:
            """A refusal's (status, code, Retry-After), or None: admitted, the server waits for the body."""
            sock.settimeout(20)  # a refusal comes at once; this is for a loaded machine
            try:
                status, headers, body = read_answer(sock)
            except TimeoutError:
                return None
            return status, body["code"], headers["retry-after"]

        answers = together(*(lambda s=s: answer(s) for s in uploads))
        refused = [a for a in answers if a is not None]
        assert len(refused) == K, answers  # one key's cap, whichever worker the uploads reached
        assert set(refused) == {(429, "Request.TooManyUploads", "1")}
        with runtime.db.read_session() as session:  # and the admitted ones hold the key's K slot leases
            held_slots = session.exec(select(SlotLease).where(SlotLease.pool == "upload-key")).all()
        assert sorted(lease.slot for lease in held_slots) == list(range(K))
        with httpx.Client(base_url=base, timeout=60) as http:  # another key is served meanwhile
            assert upload(http, {"X-API-Key": key_b}, envelope_b, make_pdf()).status_code == 201
    finally:
        for sock in spare + [s for held in chosen.values() for s in held]:
            sock.close()
    deadline = time.monotonic() + 30
    with httpx.Client(base_url=base, timeout=60) as http:  # the admitted ones went away: their slots came back
        while (response := upload(http, {"X-API-Key": key_a}, envelope_a, make_pdf())).status_code == 429:
            assert time.monotonic() < deadline, response.text
            time.sleep(0.5)
    assert response.status_code == 201, response.text
