"""One POST to a checked address, within a hard deadline, following no redirect.

The connection goes to :attr:`Target.address` (what :func:`~vault.webhooks.targets.resolve` checked), while
the Host header and TLS (server name and certificate check) use the URL's host. A timer shuts the socket at
the deadline, so a receiver that accepts and then trickles or hangs frees the worker on time.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from vault.webhooks.targets import Target

MAX_ERROR = 300


@dataclass(frozen=True)
class Answer:
    outcome: str  # delivered | http_error | timeout | network_error | refused
    http_status: int | None
    error: str | None
    duration_ms: int
    retry_after: int | None = None  # seconds the receiver asked for (Retry-After in seconds), if any


def post(target: Target, body: bytes, headers: dict[str, str], timeout: float) -> Answer:
    started = time.monotonic()
    sock: socket.socket | None = None
    timer: threading.Timer | None = None
    expired = threading.Event()

    def cut() -> None:
        expired.set()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def answer(outcome: str, status: int | None, error: str | None, retry_after: int | None = None) -> Answer:
        elapsed = int((time.monotonic() - started) * 1000)
        return Answer(outcome, status, error[:MAX_ERROR] if error else None, elapsed, retry_after)

    try:
        sock = socket.create_connection((target.address, target.port), timeout=timeout)
        timer = threading.Timer(max(0.0, timeout - (time.monotonic() - started)), cut)
        timer.daemon = True
        timer.start()
        if target.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
        connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
        connection.sock = sock
        connection.request("POST", target.path, body=body, headers={**headers, "Connection": "close"})
        response = connection.getresponse()
        status = response.status
        wait = (response.getheader("Retry-After") or "").strip()
        response.close()
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set() or isinstance(exc, TimeoutError):
            return answer("timeout", None, f"no answer within {timeout:g} s")
        return answer("network_error", None, f"{type(exc).__name__}: {exc}")
    finally:
        if timer is not None:
            timer.cancel()
        if sock is not None:
            sock.close()
    if 200 <= status < 300:
        return answer("delivered", status, None)
    note = " (redirects are not followed)" if 300 <= status < 400 else ""
    seconds = int(wait) if re.fullmatch(r"[0-9]{1,9}", wait) else None  # str.isdigit() also takes "\u00b2"
    return answer("http_error", status, f"HTTP {status}{note}", seconds)
