"""How the API is served: uvicorn's HTTP/1.1 protocol with a deadline for each request's headers.

The parser is httptools (C, llhttp) when it is installed, as it is with the project's dependencies: h11 parses
in pure Python, which cost the event loop's thread ~1 ms of CPU per 1 MiB upload more (bench/vault_in.py
--stages, docs/benchmarks.md). h11 stays the fallback, with the same deadline.

uvicorn has no header timeout: its keep-alive timer starts only after a response and any byte cancels it, so
a client that sends no request, or trickles its headers, holds a socket and a descriptor for as long as it
likes (1,500 such connections stayed open for over 72 s). :class:`HeaderDeadline` arms a timer when the
connection opens and again after each response; a request's complete headers cancel it. When it fires first
the client gets 408 ``Request.HeaderTimeout`` and the connection is closed. Bytes the parser refuses get 400
``Request.Malformed`` (uvicorn's own answer is plain text with no code), and the connection is closed too.

A connection closed while its client may still be sending (the header deadline's 408, the parser's 400, and
any response that closes before the request's body is read to its end: the body's 408 ``Request.BodyTimeout``)
is closed lingering, as nginx's ``lingering_close`` does: the server half-closes, then reads and drops what
still arrives for up to :attr:`_Deadline.linger_seconds` before it closes. A socket closed with input unread,
or receiving input after its close, answers with a reset, and a reset can make the client's stack drop the
answer it already holds (seen under load: clients still sending read ``ECONNRESET`` instead of the 408).
uvicorn closes its transport itself, so the protocol hands it a :class:`_LingeringTransport` whose ``close``
lingers when input may be unread. The body has its own pace, kept by the edge middleware
(:mod:`vault.api.edge`). ``evault serve``, the tests and the benches serve with :func:`uvicorn_config`, so they
all run the same protocol.
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any, ClassVar, cast

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is a dependency; h11 serves without it
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

from compliance.error_codes import CODES
from storage.settings import EdgeSettings
from vault.api.request_id import new_request_id


def _closing_answer(code: str, message: str, details: dict[str, Any]) -> bytes:
    """An answer the protocol gives itself, before any request reaches the app: the API's error body with a
    request id (also in ``X-Request-Id``, as every answer of the app carries one), the status the code's
    catalogue entry names, and ``connection: close``."""
    catalogued = CODES[code].status
    if catalogued is None:  # pragma: no cover - an operator's code, never an HTTP answer
        raise ValueError(f"{code} has no HTTP status")
    status = HTTPStatus(catalogued)
    request_id = new_request_id()
    body = json.dumps({"code": code, "message": message, "details": details, "request_id": request_id}).encode()
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nx-request-id: {request_id}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _timeout_response(seconds: float) -> bytes:
    return _closing_answer(
        "Request.HeaderTimeout",
        f"the request's headers did not arrive within {seconds:g} s",
        {"timeout_seconds": seconds, "setting": "EVAULT_HEADER_TIMEOUT_SECONDS"},
    )


class _LingeringTransport:
    """The connection's transport as uvicorn holds it: ``close`` lingers while the client may still be sending,
    and the connection reads as closing from then on (so uvicorn neither answers nor waits on it again)."""

    def __init__(self, transport: asyncio.Transport, protocol: _Deadline) -> None:
        self._wrapped = transport
        self._protocol = protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._wrapped.is_closing()

    def close(self) -> None:
        if not self.is_closing() and self._protocol.input_unread():
            self._protocol.linger()
        else:
            self._wrapped.close()


class _Deadline:
    """A deadline from the connection's start (or the last response) to a request's full headers, and the
    lingering close; mixed into one of uvicorn's HTTP/1.1 protocols, whose ``loop``, ``transport`` and ``cycle``
    it uses."""

    header_timeout: ClassVar[float] = 10.0
    linger_seconds: ClassVar[float] = 2.0
    _header_timer: asyncio.TimerHandle | None = None  # the header deadline, then the linger's end
    lingering: bool = False
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport  # uvicorn's: the lingering one
    _socket: asyncio.Transport  # the event loop's, under it
    cycle: Any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._socket = cast(asyncio.Transport, transport)
        super().connection_made(_LingeringTransport(self._socket, self))  # type: ignore[misc]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # after the close: read and dropped, so that the close is a FIN and not a reset
        super().data_received(data)  # type: ignore[misc]

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._arm()  # before the pipelined next request, whose headers may already be here
        super().on_response_complete()  # type: ignore[misc]

    def input_unread(self) -> bool:
        """A request's body is not read to its end: its client may still be sending it."""
        return self.cycle is not None and bool(self.cycle.more_body)

    def linger(self) -> None:
        """Half-close, drop what arrives, and close when the client does or ``linger_seconds`` have passed."""
        self._disarm()
        if not self._socket.can_write_eof():  # pragma: no cover - TCP transports can
            self._socket.close()
            return
        self.lingering = True
        self._socket.write_eof()  # what was written, then a FIN; the client's own FIN closes the transport
        self._socket.resume_reading()  # uvicorn may have paused it while the body waited for the app
        self._header_timer = self.loop.call_later(self.linger_seconds, self._socket.close)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes its parser refuses (``msg`` is its own text): the API's error body, and a
        lingering close, since the rest of what the client sends is never read."""
        self.transport.write(
            _closing_answer(
                "Request.Malformed",
                "the request is not valid HTTP/1.1 (its request line, headers or body framing); nothing was done",
                {},
            )
        )
        self.linger()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return
        self.transport.write(_timeout_response(self.header_timeout))
        self.linger()  # the headers' sender may still be sending


class HeaderDeadline(_Deadline, H11Protocol):
    """h11 (pure Python) with the header deadline."""

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers are in: its body is the edge's to pace
            self._disarm()


if HttpToolsProtocol is not None:

    class HeaderDeadlineTools(_Deadline, HttpToolsProtocol):
        """httptools (C) with the header deadline."""

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._disarm()  # a request's headers are in: its body is the edge's to pace

    PROTOCOL: type[asyncio.Protocol] = HeaderDeadlineTools
else:  # pragma: no cover
    PROTOCOL = HeaderDeadline


def header_deadline_protocol(seconds: float, base: type[asyncio.Protocol] | None = None) -> type[asyncio.Protocol]:
    """The protocol class with this deadline (uvicorn makes one instance per connection from the class)."""
    return type("HeaderDeadline", (base or PROTOCOL,), {"header_timeout": float(seconds)})


def uvicorn_config(app: Any, edge: EdgeSettings, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for ``app``, with the header deadline of ``edge``; ``options`` go to uvicorn."""
    return uvicorn.Config(app, http=header_deadline_protocol(edge.header_timeout_seconds), **options)
