"""Put the caller's rate-limit state on every answer: ``RateLimit-Policy``, ``RateLimit`` and, on 429,
``Retry-After`` (draft-ietf-httpapi-ratelimit-headers-08+ structured fields). Answers to requests that never
identified a key (401, unknown routes before authentication) carry none: there is no quota to report."""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from vault.api.deps import RATE_STATE
from vault.ratelimit import Usage


def rate_headers(usages: list[Usage], status: int) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"ratelimit-policy", ", ".join(u.policy.header() for u in usages).encode()),
        (b"ratelimit", ", ".join(u.header() for u in usages).encode()),
    ]
    spent = [u for u in usages if not u.admitted]
    if status == 429 and spent:
        headers.append((b"retry-after", str(spent[0].reset).encode()))
    return headers


class RateLimitHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return

        async def send_with_limits(message: Message) -> None:
            usages = scope.get("state", {}).get(RATE_STATE)
            if message["type"] == "http.response.start" and usages:
                extra = rate_headers(usages, message["status"])
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_limits)
