"""What every partner endpoint does the same way: idempotent POSTs, ETags, conditional requests.

A mutation runs through :func:`mutate`: with an ``Idempotency-Key`` it first claims the key (or replays the
first answer), then calls its one service with an ``on_commit`` hook that shapes the answer (the envelope as
it now is, its ETag, a ``Location`` for 201) and records it for the key inside the service's own transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import rfc8785
from anyio import to_thread
from litestar import Request, Response
from sqlmodel import Session

from compliance.errors import InvalidInput
from storage.models import Envelope, VaultedDocument, VaultRecord
from vault.envelopes import describe
from vault.idempotency import HEADER_VALUE, MAX_KEY, Pending, Replay, abandon, begin, complete_alone, fingerprint
from vault.lifecycle import etag, matches
from vault.runtime import Runtime

API_PREFIX = "/api/v2/partner"


@dataclass
class Outcome:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    def response(self, replayed: bool = False) -> Response[Any]:
        headers = {**self.headers, **({"Idempotent-Replayed": "true"} if replayed else {})}
        return Response(self.body, status_code=self.status, headers=headers)


def envelope_outcome(
    session: Session,
    envelope: Envelope,
    status: int,
    *,
    written: tuple[VaultRecord, list[VaultedDocument]] | None = None,
    **extra: Any,
) -> Outcome:
    """The envelope as it now is, with its ETag (and ``Location`` for 201); ``written``: see ``describe``."""
    headers = {"ETag": etag(envelope)}
    if status == 201:
        headers["Location"] = f"{API_PREFIX}/envelopes/{envelope.id}"
    return Outcome(status, {**describe(session, envelope, written), **extra}, headers)


def target(request: Request[Any, Any, Any]) -> str:
    query = request.scope.get("query_string", b"").decode("latin-1")
    return request.url.path + (f"?{query}" if query else "")


def json_digest(body: bytes) -> str:
    """Canonical JSON (RFC 8785), so key order and spacing do not make a retry a different request."""
    try:
        return "json:" + hashlib.sha256(rfc8785.dumps(json.loads(body))).hexdigest()
    except (ValueError, TypeError, rfc8785.CanonicalizationError, RecursionError):
        return "raw:" + hashlib.sha256(body).hexdigest()


def parts_digest(parts: list[tuple[str, str | None, str]]) -> str:
    """Multipart: each part's name, filename and SHA-256 (hex), in order, so a new boundary is the same body."""
    return "multipart:" + hashlib.sha256(json.dumps([list(part) for part in parts]).encode()).hexdigest()


def raw_digest(sha256_hex: str) -> str:
    """A raw body, by the SHA-256 it was hashed to as it arrived."""
    return "raw:" + sha256_hex


Hook = Callable[[Session, Any], None]  # gets what the service changed: the envelope, or (transfers) a transfer
Shape = Callable[..., Outcome]  # (session, what changed, status, **extra) -> the answer


def _run(
    runtime: Runtime,
    org_id: str,
    key: str | None,
    fp: str,
    status: int,
    call: Callable[[Hook], Outcome | None],
    extra: dict[str, Any],
    shape: Shape = envelope_outcome,
) -> Response[Any]:
    pending: Pending | None = None
    if key is not None:
        api = runtime.settings.api
        began = begin(
            runtime.db,
            org_id,
            key,
            fp,
            timedelta(seconds=api.idempotency_ttl_seconds),
            timedelta(seconds=runtime.settings.vault.claim_lease_seconds),  # as long as a request owns its claim
        )
        if isinstance(began, Replay):
            return Outcome(began.status, began.body, began.headers).response(replayed=True)
        pending = began
    captured: list[Outcome] = []

    def hook(session: Session, changed: Any) -> None:
        outcome = shape(session, changed, status, **extra)
        if pending is not None:
            pending.complete(session, outcome.status, outcome.body, outcome.headers)
        captured.append(outcome)

    try:
        unchanged = call(hook)
    except BaseException:
        if pending is not None:
            abandon(runtime.db, pending)
        raise
    if unchanged is None:
        return captured[-1].response()
    # Nothing changed (a replay by content), even if a hook ran in a transaction that then rolled back.
    if pending is not None:
        complete_alone(runtime.db, pending, unchanged.status, unchanged.body, unchanged.headers)
    return unchanged.response()


async def mutate(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    org_id: str,
    body_digest: str,
    status: int,
    call: Callable[[Hook], Outcome | None],
    shape: Shape = envelope_outcome,
    **extra: Any,
) -> Response[Any]:
    """Run one mutating service call under the request's Idempotency-Key (if any), off the event loop.

    ``call`` gets the hook to pass as the service's ``on_commit``; it returns None when the service changed
    the envelope (the hook shaped the answer), or the answer itself when nothing changed (a replay by content).
    """
    fp = fingerprint(request.method, target(request), body_digest)
    key = request.headers.get("idempotency-key")
    return await to_thread.run_sync(_run, runtime, org_id, key, fp, status, call, extra, shape)


def precondition_header(request: Request[Any, Any, Any], name: str) -> str | None:
    """``If-Match`` or ``If-None-Match`` as sent, or None if absent; present but empty or not visible ASCII is
    refused (400), never taken as absent: a client that meant to make a condition must learn it made none."""
    value = request.headers.get(name)
    if value is not None and (len(value) > MAX_KEY or not HEADER_VALUE.fullmatch(value)):
        raise InvalidInput("Request.InvalidHeader", f"{name} must be visible ASCII (an ETag or a list)", field=name)
    return value


def if_match(request: Request[Any, Any, Any]) -> str | None:
    return precondition_header(request, "if-match")


def conditional(request: Request[Any, Any, Any], body: dict[str, Any], tag: str) -> Response[Any]:
    """A read with its ETag; 304 without a body when ``If-None-Match`` names the current tag."""
    if matches(precondition_header(request, "if-none-match"), tag):
        return Response(None, status_code=304, headers={"ETag": tag})
    return Response(body, headers={"ETag": tag})
