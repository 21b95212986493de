"""A real local webhook receiver for the tests: records every request; can answer, fail, hang or be down."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.ports import aux_port


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int
    at: float = field(default_factory=time.monotonic)


class Receiver:
    """``mode``: ``ok`` (204), ``fail`` (503), ``redirect`` (307 to elsewhere), ``gone`` (410) or ``hang`` (no
    answer for long); ``before_answer``, if set, runs after a request is recorded and before it is answered."""

    def __init__(self) -> None:
        self.port = aux_port("webhook_receiver")
        self.mode = "ok"
        self.retry_after: int | str | None = None  # sent with 503 when set
        self.before_answer: Callable[[], None] | None = None
        self.received: list[Received] = []
        self.released = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                mode = receiver.mode
                status = {"ok": 204, "fail": 503, "redirect": 307, "gone": 410, "hang": 0}[mode]
                receiver.received.append(Received(dict(self.headers), body, status))
                if mode == "hang":
                    receiver.released.wait(60)
                    return
                if receiver.before_answer is not None:
                    receiver.before_answer()
                self.send_response(status)
                if mode == "redirect":
                    self.send_header("Location", "http://10.0.0.1/elsewhere")
                if mode == "fail" and receiver.retry_after is not None:
                    self.send_header("Retry-After", str(receiver.retry_after))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Down: nothing listens on the port any more (connections are refused)."""
        self.released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def delivered(self) -> list[Received]:
        return [r for r in self.received if 200 <= r.status < 300]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """The first ``count`` requests answered 2xx, waiting up to ``timeout`` seconds for them."""
        deadline = time.monotonic() + timeout
        while len(self.delivered()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        got = self.delivered()
        assert len(got) >= count, f"received {len(got)} of {count} deliveries in {timeout} s"
        return got
