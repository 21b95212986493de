"""Every response carries a server-made request id; a caller's ``X-Request-Id`` travels as a correlation id.

The id is made on first need (by an error handler or when the response starts) and kept in the ASGI scope,
so the body's ``request_id`` and the ``X-Request-Id`` header always agree. It is added by a ``before_send``
hook, which sees every response: also a 404, a 405 or a 413 that never reached a route's middleware. A
caller's id never replaces ours (it could collide or be chosen to confuse the logs); it is echoed, if sane,
as ``X-Correlation-Id``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from litestar.types import Message, Scope

_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def ids(scope: Scope | dict[str, Any]) -> tuple[str, str | None]:
    """``(request_id, correlation_id)`` of this request, made once and then kept in the scope."""
    state = scope.setdefault("state", {})
    if "request_id" not in state:
        state["request_id"] = new_request_id()
        supplied = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1")
        state["correlation_id"] = supplied if _SANE.fullmatch(supplied) else None
    return state["request_id"], state["correlation_id"]


async def add_id_headers(message: Message, scope: Scope) -> None:
    """``before_send`` hook: stamp the ids on the response start (replacing any set on the way)."""
    if message["type"] != "http.response.start":
        return
    rid, correlation = ids(scope)
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in (b"x-request-id", b"x-correlation-id")]
    headers.append((b"x-request-id", rid.encode()))
    if correlation is not None:
        headers.append((b"x-correlation-id", correlation.encode()))
    message["headers"] = headers
