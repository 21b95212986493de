"""Limits at the edge: what a request may cost is settled from its headers, before any of its body is read.

For every route, in this order:

1. a partner route authenticates the API key, counts the request against the key's rate limits and its
   organisation's (a document upload also against its organisation's uploads), all or none (429,
   :mod:`vault.ratelimit`), and checks the route's scope (403), from the headers alone, so an unauthenticated
   or throttled caller cannot make the service read, buffer or parse a byte of its body;
2. the body limit is the route's: the document routes (paths ending ``/vault-in-signed``,
   ``/vault-in-upload``, ``/upload``) take ``EVAULT_MAX_UPLOAD_BYTES``, every other route
   ``EVAULT_MAX_JSON_BYTES``. A ``Content-Length`` above it is 413 ``Request.TooLarge`` at once; a body that
   grows past it while streaming is cut off with the same 413;
3. a JSON body is read here (it is small), and nesting deeper than ``MAX_BODY_DEPTH`` is 400
   ``Request.TooDeep`` before any decoder (they recurse) sees it;
4. a document upload takes a slot: at most ``EVAULT_MAX_UPLOADS_PER_KEY`` in flight per API key, and for
   its organisation ``EVAULT_MAX_UPLOADS_PER_ORG`` while alone or its fair share beside others (else 429
   ``Request.TooManyUploads``), and ``EVAULT_MAX_UPLOADS`` in total (else 503 ``Request.ServerBusy``), all
   with ``Retry-After``, instead of queueing without bound. Its slots are given back before its answer's last
   part is sent (a client that sends its next upload on reading it finds them free), or when it ends without one;
5. every body must keep up: byte n must be in by ``EVAULT_BODY_GRACE_SECONDS`` + n /
   ``EVAULT_BODY_MIN_BYTES_PER_SECOND`` after its headers are accepted (the service's own time checking the key
   is not the client's), or the request ends with 408
   ``Request.BodyTimeout`` and the connection is closed; the slot and the spooled part go with it. (The
   headers themselves have ``EVAULT_HEADER_TIMEOUT_SECONDS``: see :mod:`vault.api.server`.)

The per-key and per-organisation caps are slot leases in the database (:mod:`vault.slot_leases`), so they hold
across ``--workers`` and replicas; the total and the fair share beside other organisations are this process's
own (:mod:`vault.slots`): they bound its spools and threads (docs/scale-out.md).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import anyio
from anyio import to_thread
from litestar.enums import ScopeType
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, HTTPRequestEvent, Message, Receive, ReceiveMessage, Scope, Send

from compliance.errors import RateLimited, TimedOut, TooLarge, Unavailable
from storage.settings import EdgeSettings
from vault.field_limits import MAX_BODY_DEPTH, check_json_depth
from vault.ratelimit import admit, refuse_if_spent, request_policies
from vault.runtime import Runtime
from vault.slot_leases import Cap, SlotLeases, shared_by_processes, slot_leases
from vault.slots import Full, Slots
from vault.tenancy import Principal, authenticate

PARTNER_PREFIX = "/api/v2/partner/"
UPLOAD_SUFFIXES = ("/vault-in-signed", "/vault-in-upload", "/upload")
PRINCIPAL_STATE = "evault.principal"
RATE_STATE = "rate_limit_usage"
RETRY_AFTER_SECONDS = 1


def _refuse_upload(full: Full, limit: int) -> RateLimited | Unavailable:
    """No upload slot: the key's or the organisation's share (429) or the whole process's (503)."""
    if full == "key":
        return RateLimited(
            "Request.TooManyUploads",
            f"this API key has {limit} uploads in flight; retry when one finishes",
            limit=limit,
            setting="EVAULT_MAX_UPLOADS_PER_KEY",
            retry_after_seconds=RETRY_AFTER_SECONDS,
        )
    if full == "org":
        return RateLimited(
            "Request.TooManyUploads",
            f"this organisation has its share of uploads in flight ({limit}); retry when one finishes",
            limit=limit,
            setting="EVAULT_MAX_UPLOADS_PER_ORG",
            retry_after_seconds=RETRY_AFTER_SECONDS,
        )
    return Unavailable(
        "Request.ServerBusy",
        "the service has as many uploads in flight as it takes; retry shortly",
        limit=limit,
        setting="EVAULT_MAX_UPLOADS",
        retry_after_seconds=RETRY_AFTER_SECONDS,
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _too_large(limit: int, setting: str) -> TooLarge:
    return TooLarge("Request.TooLarge", f"the body is larger than {limit} bytes", limit=limit, setting=setting)


def _authenticate(
    runtime: Runtime, raw: str | None, scope: str | None, route_policy: str | None, state: dict[str, Any]
) -> Principal:
    """Who is calling, counted against their rate limits (the usage goes to ``state`` for the headers)."""
    with runtime.db.read_session() as session:
        principal = authenticate(session, raw)
    policies = request_policies(runtime.settings.api, principal.key_id, principal.org_id, route_policy)
    state[RATE_STATE] = usages = admit(runtime.db, policies)
    refuse_if_spent(usages)
    if scope is not None:
        principal.require(scope)
    return principal


class EdgeMiddleware:
    """ASGI middleware around every route (after routing, so the route's scope requirement is known)."""

    def __init__(self, app: ASGIApp, runtime: Runtime, slots: Slots) -> None:
        self.app, self.runtime, self.slots = app, runtime, slots

    @property
    def shared(self) -> SlotLeases:
        """Every process's upload caps, in the database (looked up per request: building the app opens none)."""
        return slot_leases(self.runtime.db)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        upload = path.endswith(UPLOAD_SUFFIXES)
        principal = None
        if path.startswith(PARTNER_PREFIX):
            opt = scope["route_handler"].opt
            state = scope.setdefault("state", {})
            raw_key = _header(scope, b"x-api-key")
            policy = opt.get("rate_policy") or ("uploads" if upload else None)
            principal = await to_thread.run_sync(_authenticate, self.runtime, raw_key, opt.get("scope"), policy, state)
            state[PRINCIPAL_STATE] = principal
        settings = self.runtime.settings
        pace = _Pace(settings.edge, anyio.current_time())
        limit, setting = (
            (settings.vault.max_upload_bytes, "EVAULT_MAX_UPLOAD_BYTES")
            if upload
            else (settings.edge.max_json_bytes, "EVAULT_MAX_JSON_BYTES")
        )
        length = (_header(scope, b"content-length") or "").strip()
        if length.isascii() and length.isdigit() and int(length) > limit:
            raise _too_large(limit, setting)
        if not upload:
            await self.app(scope, await _buffered(receive, limit, setting, pace), send)
            return
        if principal is None:  # a document route outside the partner API has no caller to count
            await self.app(scope, _counted(receive, limit, setting, pace), send)
            return
        held = _Held()
        try:
            held.stack.enter_context(self.slots.slot(principal.key_id, _refuse_upload, org=principal.org_id))
            if shared_by_processes(self.runtime.db):  # else this process's own slots are every process's
                caps = [
                    Cap("upload-key", principal.key_id, settings.edge.max_uploads_per_key, "key"),
                    Cap("upload-org", principal.org_id, settings.edge.max_uploads_per_org, "org"),
                ]
                tickets = await to_thread.run_sync(self.shared.acquire, caps, _refuse_upload)  # every process's
                held.stack.push_async_callback(to_thread.run_sync, self.shared.release, tickets)
            await self.app(scope, _counted(receive, limit, setting, pace), held.freeing_before_last_part(send))
        finally:
            await held.free()


class _Held:
    """An upload's slots (this process's, and on PostgreSQL every process's), given back exactly once: before
    its answer's last part is sent, or when it ends without one (it raised, the client went away). A client
    that sends its next upload the moment it reads an answer must find them free, even when sending that last
    part yields to other requests before the handler returns."""

    def __init__(self) -> None:
        self.stack = AsyncExitStack()
        self._freed = False

    async def free(self) -> None:
        if self._freed:
            return
        self._freed = True
        with anyio.CancelScope(shield=True):  # a cancelled request gives its slots back all the same
            await self.stack.aclose()

    def freeing_before_last_part(self, send: Send) -> Send:
        async def send_then_free(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                await self.free()
            await send(message)

        return send_then_free


class _Pace:
    """The pace a body must keep: its n-th byte in by ``grace + n / rate`` seconds after its headers are accepted."""

    def __init__(self, edge: EdgeSettings, started: float) -> None:
        self.rate, self.grace, self.started = edge.body_min_bytes_per_second, edge.body_grace_seconds, started

    def seconds_left(self, received: int) -> float:
        return self.started + self.grace + received / self.rate - anyio.current_time()

    def too_slow(self, received: int) -> TimedOut:
        return TimedOut(
            "Request.BodyTimeout",
            f"the body arrived slower than {self.rate} bytes a second (after {self.grace} s); send it faster",
            received_bytes=received,
            min_bytes_per_second=self.rate,
            grace_seconds=self.grace,
            setting="EVAULT_BODY_MIN_BYTES_PER_SECOND",
        )


def _counted(receive: Receive, limit: int, setting: str, pace: _Pace) -> Receive:
    """``receive`` that refuses a body growing past ``limit`` (chunked, or lying about its length), or arriving
    slower than ``pace`` (a stalled or trickling client would otherwise hold its slot and spool for ever)."""
    total, complete = 0, False

    async def wrapped() -> ReceiveMessage:
        nonlocal total, complete
        if complete:  # the body is in: what comes next (a disconnect) may take as long as it takes
            return await receive()
        with anyio.move_on_after(max(0.0, pace.seconds_left(total))) as waited:
            message = await receive()
        if waited.cancelled_caught:
            raise pace.too_slow(total)
        if message["type"] == "http.request":
            total += len(message.get("body", b""))
            if total > limit:
                raise _too_large(limit, setting)
            complete = not message.get("more_body", False)
        return message

    return wrapped


async def _buffered(receive: Receive, limit: int, setting: str, pace: _Pace) -> Receive:
    """Read a small body whole (within ``limit``), refuse nesting deeper than any route takes, replay it."""
    counted = _counted(receive, limit, setting, pace)
    chunks: list[bytes] = []
    while True:
        message = await counted()
        if message["type"] != "http.request":
            return _replay(b"", receive, message)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    if body:
        check_json_depth(body, "body", MAX_BODY_DEPTH)
    return _replay(body, receive, None)


def _replay(body: bytes, receive: Receive, pending: Any) -> Receive:
    sent = False

    async def wrapped() -> ReceiveMessage:
        nonlocal sent
        if not sent:
            sent = True
            if pending is not None:
                message: ReceiveMessage = pending
                return message
            replayed: HTTPRequestEvent = {"type": "http.request", "body": body, "more_body": False}
            return replayed
        return await receive()

    return wrapped


def edge_middleware(runtime: Runtime) -> DefineMiddleware:
    """The middleware for this runtime, with one set of upload slots shared by every route."""
    edge = runtime.settings.edge
    slots = Slots(edge.max_uploads, edge.max_uploads_per_key, edge.max_uploads_per_org)
    return DefineMiddleware(EdgeMiddleware, runtime=runtime, slots=slots)
