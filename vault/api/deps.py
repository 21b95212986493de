"""Dependencies every partner endpoint shares: the open vault, and the authenticated caller.

Each route declares the scope it needs in ``opt={"scope": ...}`` (and its rate policy in ``rate_policy``); the
edge middleware (:mod:`vault.api.edge`) authenticates the caller from the headers, counts it against its key's
rate limits and checks that scope before any of the body is read. The handlers get the caller from here.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import NamedDependency

from compliance.ledger.events import Actor
from vault.api.edge import PRINCIPAL_STATE
from vault.runtime import Runtime
from vault.tenancy import Principal


def runtime_of(request: Request[Any, Any, Any]) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    principal: Principal = request.scope["state"][PRINCIPAL_STATE]  # set by the edge for every partner route
    return principal


async def provide_actor(principal: NamedDependency[Principal]) -> Actor:
    """The key, never the client's address or user agent: ledger entries are permanent (docs/certificates.md)."""
    return principal.actor()
