"""Dependencies every partner endpoint shares: the open vault, and the authenticated caller.

Each route declares the scope it needs in ``opt={"scope": ...}``; the caller is authenticated off the event
loop (it is a database look-up) and checked against that scope before the handler runs.
"""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from litestar import Request
from litestar.di import NamedDependency

from compliance.ledger.events import Actor
from vault.api.edge import PRINCIPAL_STATE
from vault.runtime import Runtime
from vault.tenancy import Principal, authenticate


def runtime_of(request: Request[Any, Any, Any]) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _authenticate(runtime: Runtime, raw: str | None, scope: str | None) -> Principal:
    with runtime.db.read_session() as session:
        principal = authenticate(session, raw)
    if scope is not None:
        principal.require(scope)
    return principal


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    known: Principal | None = request.scope.get("state", {}).get(PRINCIPAL_STATE)
    if known is not None:  # authenticated at the edge, before the body was read
        return known
    scope = request.route_handler.opt.get("scope")
    return await to_thread.run_sync(_authenticate, runtime_of(request), request.headers.get("x-api-key"), scope)


async def provide_actor(request: Request[Any, Any, Any], principal: NamedDependency[Principal]) -> Actor:
    client = request.client.host if request.client else None
    return principal.actor(source=client, user_agent=request.headers.get("user-agent"))
