"""Liveness (``/health``) and readiness (``/ready``) for load balancers and supervisors.

``/health`` says only that the process answers. ``/ready`` checks what a request needs: the database
answers a trivial query (and, for SQLite, the file at its path is still the one opened), the authoritative
bucket still has versioning and Object Lock, the copies and staging buckets exist with versioning, the
signing key signs, the checkpointer runs, the embedded store's process lives and the boundary it claims is
in force (weed in its own network namespace). It names the store's boundary. Each check is bounded by short
timeouts, so a probe never hangs on a dead dependency; any failing check is a 503 naming it.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from storage.buckets import bucket_problems, check_worm_bucket
from storage.db import DatabaseFileChanged
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
    except DatabaseFileChanged as exc:
        checks["database"] = f"failing: {exc}"
    except Exception as exc:
        checks["database"] = _failure(exc)
    client = runtime.probe_client or runtime.s3_client
    s3 = runtime.settings.s3
    try:
        check_worm_bucket(client, s3.authoritative_bucket)
        checks["authoritative_bucket"] = OK
    except Exception as exc:
        checks["authoritative_bucket"] = f"{_failure(exc)}: {exc}"
    for name, bucket in {"copies_bucket": s3.copies_bucket, "staging_bucket": s3.staging_bucket}.items():
        if name == "staging_bucket" and bucket == s3.copies_bucket:
            continue  # one bucket, checked once
        try:
            problems = bucket_problems(client, bucket, worm=False)
            checks[name] = f"failing: {'; '.join(problems)}" if problems else OK
        except Exception as exc:
            checks[name] = f"{_failure(exc)}: {exc}"
    key = runtime.key
    probe = b"evault readiness probe"
    try:
        key.public_key.verify(key.sign(probe), probe)
        checks["signing_key"] = OK
    except Exception as exc:
        checks["signing_key"] = _failure(exc)
    checks["checkpointer"] = OK if runtime.checkpointer_alive() else "failing: not running"
    checks["store"] = OK if runtime.store_alive() else "failing: the embedded store's process exited"
    if runtime.embedded_s3 is not None:
        problem = runtime.embedded_s3.boundary_problem()
        checks["store_boundary"] = f"failing: {problem}" if problem else OK
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
