"""The one place where errors become HTTP: every failure leaves as the same JSON body.

``{"code": "Resource.ErrorType", "message": ..., "details": {...}, "request_id": ..., "correlation_id": ...}``.
Domain errors carry their code; Litestar's own errors (validation, unknown route, wrong method, body too
large) get codes here; a database that cannot be reached is a 503 ``Database.Unavailable``, an object store
that cannot be reached a 503 ``Storage.Unavailable``, on every route; stored objects that disagree with our
records are our own corruption, a 500 ``Storage.Corrupt``; anything unexpected is a 500
``Server.InternalError`` whose details never leak internals. Every 503 says when to retry (``Retry-After``).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from compliance.errors import EvaultError
from storage.errors import BucketNotWorm, StorageError, StorageUnavailable
from vault.api.request_id import ids

log = logging.getLogger("evault.api")

RETRY_AFTER_SECONDS = 5
STATUS_BY_CATEGORY = {
    "invalid": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "gone": 410,
    "timed_out": 408,
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
# SQLite reports a bug (no such table) and a busy database with the same exception class; only these are
# the database being unavailable.
_SQLITE_UNAVAILABLE = ("database is locked", "database is busy", "unable to open database", "disk i/o error")


def request_id(request: Request[Any, Any, Any]) -> str:
    return ids(request.scope)[0]


def error_response(
    request: Request[Any, Any, Any],
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    rid, correlation = ids(request.scope)
    body = {"code": code, "message": message, "details": details or {}, "request_id": rid}
    if correlation is not None:
        body["correlation_id"] = correlation
    headers = dict(headers or {})
    if status == 503:
        headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def handle_domain_error(request: Request[Any, Any, Any], exc: EvaultError) -> Response[dict[str, Any]]:
    status = STATUS_BY_CATEGORY[exc.category]
    if status >= 500:
        log.error("request %s failed: %s %s", request_id(request), exc.code, exc.message)
    response = error_response(request, status, exc.code, exc.message, exc.details)
    if "retry_after_seconds" in exc.details:
        response.headers["Retry-After"] = str(exc.details["retry_after_seconds"])
    if status == 408:  # the rest of a too-slow body is not worth reading: the server closes the connection
        response.headers["Connection"] = "close"
    return response


def handle_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    details: dict[str, Any] = {}
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        details["errors"] = [_field_error(item) for item in exc.extra]
    code = CODE_BY_STATUS.get(status, "Request.Error" if status < 500 else "Server.InternalError")
    message = exc.detail if status < 500 else "internal error"
    return error_response(request, status, code, message, details, headers=exc.headers)


def database_unavailable(exc: BaseException) -> bool:
    """A failure to reach or lock the database (retrying may help), as opposed to a bug in a query."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    module = type(exc.orig).__module__
    if module.startswith("sqlite3"):
        return any(text in str(exc.orig).lower() for text in _SQLITE_UNAVAILABLE)
    return isinstance(exc, OperationalError | InterfaceError)


def handle_database_error(request: Request[Any, Any, Any], exc: SQLAlchemyError) -> Response[dict[str, Any]]:
    if not database_unavailable(exc):
        return handle_unexpected(request, exc)
    log.warning("request %s: database unavailable: %s", request_id(request), type(exc.__cause__ or exc).__name__)
    return error_response(request, 503, "Database.Unavailable", "the database is unavailable; retry later")


def handle_storage_error(request: Request[Any, Any, Any], exc: StorageError) -> Response[dict[str, Any]]:
    """A storage fault no service turned into a domain error: ours, never the caller's."""
    if isinstance(exc, StorageUnavailable | BucketNotWorm):
        log.warning("request %s: object storage unavailable: %s", request_id(request), exc)
        return error_response(request, 503, "Storage.Unavailable", "object storage failed; retry later")
    log.error(
        "request %s: stored objects disagree with the records: %s: %s", request_id(request), type(exc).__name__, exc
    )
    return error_response(
        request, 500, "Storage.Corrupt", "stored objects disagree with the vault's records; quote the request id"
    )


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
