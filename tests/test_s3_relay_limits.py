"""The embedded store's loopback S3 port holds a bounded number of connections, and idle ones not for long.

A store of its own (relay cap 16, idle timeout 3 s): 200 idle connections leave the process with at most
2 x 16 + 1 relay threads and 6 x 16 relay descriptors; real S3 traffic still goes through (an idle connection
is evicted for it), and once idle for 3 s every idle connection is closed and the threads are gone.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.embedded_s3 import EmbeddedS3
from storage.s3_client import make_s3_client
from tests.fixtures_s3 import s3_port_base

CAP = 16
IDLE = 3
IDLERS = 200


def _descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def _relay_threads() -> int:
    return sum(t.name.startswith("s3-relay-") for t in threading.enumerate())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedS3]:
    server = EmbeddedS3(
        tmp_path / "store",
        s3_port_base() + 70,
        buckets=[("relay-limits", False)],
        unprotected=False,
        relay_max_connections=CAP,
        relay_idle_seconds=IDLE,
    )
    server.start()
    yield server
    server.stop(timeout=3)  # thrown away: weed's graceful exit would take ~15 s


def test_idle_connections_are_capped_evicted_for_real_traffic_and_closed(store: EmbeddedS3) -> None:
    endpoint = store.endpoint
    s3 = make_s3_client(endpoint.url, endpoint.access_key, endpoint.secret_key, endpoint.region)
    s3.put_object(Bucket="relay-limits", Key="before", Body=b"x")
    time.sleep(IDLE + 1)  # the client's own pooled connections go idle and are closed
    threads, descriptors = _relay_threads(), _descriptors()
    idlers = [socket.create_connection(("127.0.0.1", store.ports.s3), timeout=10) for _ in range(IDLERS)]
    try:
        time.sleep(1.2)  # every idler is now idle long enough to be evicted for real traffic
        assert _relay_threads() - threads <= 2 * CAP
        assert _descriptors() - descriptors - IDLERS <= 6 * CAP
        body = os.urandom(3 << 20)
        s3.put_object(Bucket="relay-limits", Key="during", Body=body)
        assert s3.get_object(Bucket="relay-limits", Key="during")["Body"].read() == body
        assert _relay_threads() - threads <= 2 * CAP
        started = time.monotonic()
        for sock in idlers:
            assert sock.recv(1) == b""  # closed by the relay: evicted, refused at the cap, or idle
        assert time.monotonic() - started < IDLE + 5
    finally:
        for sock in idlers:
            sock.close()
    deadline = time.monotonic() + IDLE + 5
    while _relay_threads() > threads and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _relay_threads() <= threads
