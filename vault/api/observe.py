"""Every answer is counted, timed and logged once: by route template and status, with the caller's ids.

A ``before_send`` hook sees every response, also a 404 or 405 that never reached a route (its route is then
``unmatched``, so no caller can mint label values). The clock starts where the application receives the request
(:func:`timed`, around Litestar's handler), before routing. The log line carries the request and correlation
ids, the organisation and key prefix of an authenticated caller, the route template (never the raw path or
query) and the status: nothing a caller sent as a value.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry

from vault.api.edge import PRINCIPAL_STATE
from vault.api.request_id import ids
from vault.log_format import FIELDS
from vault.metrics.exposition import CONTENT_TYPE, render, scrape_registry
from vault.metrics.instruments import LATENCY, REQUESTS
from vault.runtime import Runtime

log = logging.getLogger("evault.request")

STARTED, STATUS = "evault.started", "evault.status"
UNMATCHED = "unmatched"
REGISTRY_STATE = "metrics_registry"


def metrics_registry(runtime: Runtime) -> CollectorRegistry:
    """What ``/metrics`` reads, on the API's port or on ``EVAULT_METRICS_PORT``."""
    return scrape_registry(runtime.db, runtime.settings.vault.checkpoint_interval_seconds)


def timed(app: Litestar) -> None:
    """Start each request's clock before routing, by wrapping the application's ASGI handler."""
    inner: ASGIApp = app.asgi_handler

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("state", {})[STARTED] = time.perf_counter()
        await inner(scope, receive, send)

    app.asgi_handler = handler


def _fields(scope: Scope, status: int, seconds: float) -> dict[str, Any]:
    request_id, correlation_id = ids(scope)
    principal = scope.get("state", {}).get(PRINCIPAL_STATE)
    return {
        "request_id": request_id,
        "correlation_id": correlation_id,
        "org": getattr(principal, "org_id", None),
        "key_prefix": getattr(principal, "key_prefix", None),
        "method": scope.get("method"),
        "route": scope.get("path_template") or UNMATCHED,
        "status": status,
        "duration_ms": round(seconds * 1000, 2),
    }


async def observe(message: Message, scope: Scope) -> None:
    """``before_send`` hook: note the status at the start; count, time and log at the answer's last part."""
    if scope["type"] != ScopeType.HTTP:
        return
    state = scope.setdefault("state", {})
    if message["type"] == "http.response.start":
        state[STATUS] = message["status"]
        return
    if message["type"] != "http.response.body" or message.get("more_body", False) or STATUS not in state:
        return
    seconds = time.perf_counter() - state.get(STARTED, time.perf_counter())
    fields = _fields(scope, state.pop(STATUS), seconds)
    REQUESTS.labels(fields["method"], fields["route"], str(fields["status"])).inc()
    LATENCY.labels(fields["method"], fields["route"]).observe(seconds)
    line = (fields["method"], fields["route"], fields["status"], fields["duration_ms"], fields["request_id"])
    log.info("%s %s %s %.1fms %s", *line, extra={FIELDS: fields})


@get("/metrics", include_in_schema=False, sync_to_thread=True)
def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus's scrape: unauthenticated, on this port only when no ``EVAULT_METRICS_PORT`` is set."""
    state = request.app.state
    if REGISTRY_STATE not in state:  # made on first use: create_app itself touches no database
        state[REGISTRY_STATE] = metrics_registry(state.runtime)
    return Response(render(state[REGISTRY_STATE]), media_type=CONTENT_TYPE)
