"""``/envelopes/:id/retention`` and ``/envelopes/:id/legal-hold``: lengthen retention, set and clear a legal hold.

Each answers the envelope (its ``vault`` part shows ``retain_until`` and ``legal_hold``) with its new ETag, under
the request's Idempotency-Key and If-Match like every mutation; the services are in :mod:`vault.retention`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, Response, delete, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from compliance.ledger.events import Actor
from vault.api.conventions import Hook, if_match, json_digest, mutate
from vault.api.schemas import WRITE_ERRORS, EnvelopeView, answers
from vault.retention import extend_retention, set_legal_hold
from vault.runtime import Runtime


@dataclass
class RetentionIn:
    retain_until: str  # RFC 3339 with its offset; later than the current date


@dataclass
class LegalHoldIn:
    reason: str


class RetentionController(Controller):
    path = "/envelopes/{envelope_id:str}"
    tags = ["Retention"]

    @post(
        "/retention",
        opt={"scope": "retention:write"},
        status_code=200,
        responses=answers(200, EnvelopeView, WRITE_ERRORS, "Retention lengthened on every object and the record"),
    )
    async def extend(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[RetentionIn],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        envelope_id: FromPath[str],
    ) -> Response[Any]:
        """Lengthen the authoritative copy's COMPLIANCE retention; a shorter date is 409 Retention.CannotShorten."""
        precondition = if_match(request)

        def call(hook: Hook) -> None:
            extend_retention(
                runtime.custody(), actor, envelope_id, data.retain_until, if_match=precondition, on_commit=hook
            )

        return await mutate(request, runtime, actor.org_id, json_digest(await request.body()), 200, call)

    @post(
        "/legal-hold",
        opt={"scope": "retention:write"},
        status_code=200,
        responses=answers(200, EnvelopeView, WRITE_ERRORS, "Held: every authoritative object version"),
    )
    async def hold(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[LegalHoldIn],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        envelope_id: FromPath[str],
    ) -> Response[Any]:
        """Set S3 Object Lock legal hold on every authoritative object version, for a stated reason."""
        return await self._hold(request, data, runtime, actor, envelope_id, True)

    @delete(
        "/legal-hold",
        opt={"scope": "retention:write"},
        status_code=200,
        responses=answers(200, EnvelopeView, WRITE_ERRORS, "Released from the legal hold"),
    )
    async def release_hold(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[LegalHoldIn],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        envelope_id: FromPath[str],
    ) -> Response[Any]:
        """Clear the legal hold, for a stated reason; retention still applies."""
        return await self._hold(request, data, runtime, actor, envelope_id, False)

    async def _hold(
        self,
        request: Request[Any, Any, Any],
        data: LegalHoldIn,
        runtime: Runtime,
        actor: Actor,
        envelope_id: str,
        on: bool,
    ) -> Response[Any]:
        precondition = if_match(request)

        def call(hook: Hook) -> None:
            set_legal_hold(
                runtime.custody(), actor, envelope_id, data.reason, on, if_match=precondition, on_commit=hook
            )

        return await mutate(request, runtime, actor.org_id, json_digest(await request.body()), 200, call)
