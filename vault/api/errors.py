"""The one place where errors become HTTP: every failure leaves as the same JSON body.

``{"code": "Resource.ErrorType", "message": ..., "details": {...}, "request_id": ...}``. Domain errors carry
their code; Litestar's own errors (validation, unknown route, body too large) get codes here; anything
unexpected is a 500 ``Server.InternalError`` whose details never leak internals.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from compliance.errors import EvaultError

log = logging.getLogger("evault.api")

STATUS_BY_CATEGORY = {
    "invalid": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "precondition_failed": 412,
    "too_large": 413,
    "rate_limited": 429,
    "integrity": 500,
    "unavailable": 503,
}
CODE_BY_STATUS = {
    400: "Request.Invalid",
    401: "Auth.Unauthenticated",
    403: "Auth.Forbidden",
    404: "Route.NotFound",
    405: "Route.MethodNotAllowed",
    413: "Request.TooLarge",
    415: "Request.UnsupportedMediaType",
    429: "Request.RateLimited",
}


def request_id(request: Request[Any, Any, Any]) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


def error_response(
    request: Request[Any, Any, Any],
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    body = {"code": code, "message": message, "details": details or {}, "request_id": request_id(request)}
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def handle_domain_error(request: Request[Any, Any, Any], exc: EvaultError) -> Response[dict[str, Any]]:
    status = STATUS_BY_CATEGORY[exc.category]
    if status >= 500:
        log.error("request %s failed: %s %s", request_id(request), exc.code, exc.message)
    return error_response(request, status, exc.code, exc.message, exc.details)


def handle_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    details: dict[str, Any] = {}
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        details["errors"] = [_field_error(item) for item in exc.extra]
    code = CODE_BY_STATUS.get(status, "Request.Error" if status < 500 else "Server.InternalError")
    message = exc.detail if status < 500 else "internal error"
    return error_response(request, status, code, message, details, dict(exc.headers or {}))


_MISSING = re.compile(r"missing required field `([^`]+)`(?: - at `\$\.?([^`]*)`)?")


def _field_error(item: Any) -> dict[str, Any]:
    """Litestar's ``{"key", "message", "source"}`` as ``{"field", "message", "source"}``. For a missing field
    Litestar names the whole body (``data``); the field is then read from msgspec's message."""
    if not isinstance(item, dict):
        return {"field": None, "message": str(item), "source": None}
    message = str(item.get("message", ""))
    field = item.get("key")
    if (missing := _MISSING.search(message)) is not None:
        field = ".".join(filter(None, (missing.group(2), missing.group(1))))
    return {"field": field, "message": message, "source": item.get("source")}


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("request %s failed unexpectedly", request_id(request), exc_info=exc)
    return error_response(request, 500, "Server.InternalError", "internal error; quote the request id")
