"""Liveness (``/health``) and readiness (``/ready``) for load balancers and supervisors.

``/health`` says only that the process answers. ``/ready`` checks what a request needs: the database
answers a trivial query, the authoritative bucket still has versioning and Object Lock, the signing key
signs, the checkpointer runs, and the embedded store's process lives; it names the store's boundary. Each
check is bounded by short timeouts, so a probe never hangs on a dead dependency.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from storage.buckets import check_worm_bucket
from vault.api.errors import error_response
from vault.runtime import Runtime

OK = "ok"


@get("/health", tags=["Operations"], sync_to_thread=False)
def health() -> dict[str, str]:
    """Liveness: the process serves requests."""
    return {"status": OK}


def _failure(exc: Exception) -> str:
    """What failed, without connection strings or other internals."""
    cause = getattr(exc, "orig", None) or exc
    return f"failing: {type(cause).__name__}"


def _checks(runtime: Runtime) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        runtime.db.ping()
        checks["database"] = OK
    except Exception as exc:
        checks["database"] = _failure(exc)
    try:
        check_worm_bucket(runtime.probe_client or runtime.s3_client, runtime.settings.s3.authoritative_bucket)
        checks["authoritative_bucket"] = OK
    except Exception as exc:
        checks["authoritative_bucket"] = f"{_failure(exc)}: {exc}"
    key = runtime.key
    probe = b"evault readiness probe"
    try:
        key.public_key.verify(key.private_key.sign(probe), probe)
        checks["signing_key"] = OK
    except Exception as exc:
        checks["signing_key"] = _failure(exc)
    checks["checkpointer"] = OK if runtime.checkpointer_alive() else "failing: not running"
    checks["store"] = OK if runtime.store_alive() else "failing: the embedded store's process exited"
    return checks


def _boundary(runtime: Runtime) -> str:
    if runtime.embedded_s3 is None:
        return "external"
    return str(getattr(runtime.embedded_s3, "boundary", None) or "n/a")


@get("/ready", tags=["Operations"], sync_to_thread=True)
def ready(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]) -> Response[dict[str, Any]]:
    """Readiness: 200 with every check's status, or 503 ``Service.NotReady`` naming the failing checks."""
    checks = _checks(runtime)
    failing = sorted(name for name, status in checks.items() if status != OK)
    boundary = _boundary(runtime)
    if failing:
        details = {"failing": failing, "checks": checks, "boundary": boundary}
        return error_response(request, 503, "Service.NotReady", "not ready: " + ", ".join(failing), details)
    return Response({"status": "ready", "checks": checks, "boundary": boundary})
