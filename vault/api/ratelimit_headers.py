"""Put the caller's rate-limit state on every answer: ``RateLimit-Policy``, ``RateLimit`` and, on 429,
``Retry-After`` (draft-ietf-httpapi-ratelimit-headers-08+ structured fields), one item per policy the request
counted against (the key's, and its organisation's across all its keys). Answers to requests that never
identified a key (401, unknown routes before authentication) carry none: there is no quota to report."""

from __future__ import annotations

from litestar.types import Message, Scope

from vault.api.edge import RATE_STATE
from vault.ratelimit import Usage, retry_after


def rate_headers(usages: list[Usage], status: int) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"ratelimit-policy", ", ".join(u.policy.header() for u in usages).encode()),
        (b"ratelimit", ", ".join(u.header() for u in usages).encode()),
    ]
    wait = retry_after(usages)
    if status == 429 and wait is not None:  # when every spent policy (the key's, its organisation's) has room
        headers.append((b"retry-after", str(wait).encode()))
    return headers


async def add_rate_headers(message: Message, scope: Scope) -> None:
    """``before_send`` hook, so it also marks the 429 the edge raises before any route middleware could."""
    usages = scope.get("state", {}).get(RATE_STATE)
    if message["type"] == "http.response.start" and usages:
        message["headers"] = [*message.get("headers", []), *rate_headers(usages, message["status"])]
