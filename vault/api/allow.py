"""``OPTIONS`` answers name every method of the path, as ``405`` already does.

Litestar 2.25 gives each path an OPTIONS handler that lists the methods known when the path's first handler was
registered; a path whose GET and POST are registered one after the other (``/envelopes``, ``/log/checkpoint``)
answered OPTIONS with one of them. The finished route table knows them all, so this ``before_send`` hook writes
the ``Allow`` header from it.
"""

from __future__ import annotations

import re
from functools import cache

from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.types import Message, Scope

_TYPED_PARAMETER = re.compile(r"\{(\w+):\w+\}")


def _untyped(path: str) -> str:
    """``/envelopes/{envelope_id:str}`` as ``/envelopes/{envelope_id}``: the route table and the scope's template
    spell parameters differently."""
    return _TYPED_PARAMETER.sub(r"{\1}", path)


@cache
def _allowed(app: Litestar) -> dict[str, bytes]:
    return {
        _untyped(route.path): ", ".join(sorted(route.methods)).encode()
        for route in app.routes
        if isinstance(route, HTTPRoute)
    }


async def complete_allow(message: Message, scope: Scope) -> None:
    if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
        return
    template = scope.get("path_template")
    if template is None or message["status"] != 204:
        return
    allowed = _allowed(scope["app"]).get(_untyped(template))
    if allowed is not None:
        headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
        message["headers"] = [*headers, (b"allow", allowed)]
