"""A TCP relay in front of the real object store that adds latency to every request, and counts them.

Slow storage is what makes evidence work long in the field (a distant region, a busy store); the relay makes
the real SeaweedFS that slow for the tests of deadlines, cancellation and shutdown, without touching the code
under test. Each chunk the client sends is held ``delay`` seconds before it is forwarded (an S3 request's head
is one chunk), and counted; the request lines it sees are kept (``lines``), so a test can tell what the
service asked the store, whichever of its processes asked.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit


class SlowLink:
    def __init__(self, upstream_url: str, port: int) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.port = port
        self.delay = 0.0
        self.requests = 0
        self.lines: list[str] = []  # "GET /bucket/key?query HTTP/1.1" of each request head seen
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", port))
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="slow-link").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, slow: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if slow:
                    with self._lock:
                        self.requests += 1
                        first = chunk.split(b"\r\n", 1)[0]
                        if first.endswith((b" HTTP/1.1", b" HTTP/1.0")):
                            self.lines.append(first.decode("latin-1"))
                    time.sleep(self.delay)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def count(self) -> int:
        with self._lock:
            return self.requests

    def close(self) -> None:
        self._closed.set()
        self._listener.close()


@contextmanager
def slow_link(upstream_url: str, port: int) -> Iterator[SlowLink]:
    link = SlowLink(upstream_url, port)
    try:
        yield link
    finally:
        link.close()
