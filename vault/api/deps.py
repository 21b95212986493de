"""Dependencies every partner endpoint shares: the open vault, and the authenticated caller.

Each route declares the scope it needs in ``opt={"scope": ...}``; the caller is authenticated off the event
loop (it is a database look-up), counted against its key's rate limits, and checked against that scope before
the handler runs.
"""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from litestar import Request
from litestar.di import NamedDependency

from compliance.ledger.events import Actor
from vault.ratelimit import Policy, admit, refuse_if_spent
from vault.runtime import Runtime
from vault.tenancy import Principal, authenticate

RATE_STATE = "rate_limit_usage"


def runtime_of(request: Request[Any, Any, Any]) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _policies(runtime: Runtime, route_policy: str | None) -> list[Policy]:
    api = runtime.settings.api
    policies = [Policy("default", *api.rate_limit)]
    if route_policy == "copies":
        policies.append(Policy("copies", *api.rate_limit_copies))
    return policies


def _authenticate(
    runtime: Runtime, raw: str | None, scope: str | None, route_policy: str | None, state: dict[str, Any]
) -> Principal:
    """Who is calling, counted against their rate limits (the usage goes to ``state`` for the headers)."""
    with runtime.db.read_session() as session:
        principal = authenticate(session, raw)
    state[RATE_STATE] = usages = admit(runtime.db, principal.key_id, _policies(runtime, route_policy))
    refuse_if_spent(usages)
    if scope is not None:
        principal.require(scope)
    return principal


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    opt = request.route_handler.opt
    state = request.scope.setdefault("state", {})
    return await to_thread.run_sync(
        _authenticate,
        runtime_of(request),
        request.headers.get("x-api-key"),
        opt.get("scope"),
        opt.get("rate_policy"),
        state,
    )


async def provide_actor(principal: NamedDependency[Principal]) -> Actor:
    """The key, never the client's address or user agent: ledger entries are permanent (see README)."""
    return principal.actor()
