"""``/envelopes``: create, list, read, poll, upload (paper flow) and void.

Each handler parses, calls one service and shapes the answer; mutations go through
:func:`vault.api.conventions.mutate` (Idempotency-Key, If-Match, ETag, Location).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from compliance.ledger.events import Actor
from vault.api.conventions import Hook, conditional, if_match, json_digest, mutate
from vault.api.schemas import (
    READ_ERRORS,
    UPLOAD_ERRORS,
    WRITE_ERRORS,
    EnvelopePage,
    EnvelopeStatus,
    EnvelopeView,
    answers,
)
from vault.api.upload_body import close_uploads, read_uploads
from vault.ceremony.document import stage_document
from vault.envelopes import NewEnvelope, register_envelope
from vault.field_limits import check_date_time
from vault.listing import DEFAULT_LIMIT, EnvelopeFilter, envelope_status, list_envelopes, show_envelope
from vault.runtime import Runtime
from vault.tenancy import Principal
from vault.void import void_envelope


@dataclass
class VoidIn:
    reason: str


class EnvelopeController(Controller):
    path = "/envelopes"
    tags = ["Envelopes"]

    @post("/", opt={"scope": "envelopes:write"}, responses=answers(201, EnvelopeView, WRITE_ERRORS, "Created"))
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[NewEnvelope],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
    ) -> Response[Any]:
        """Register an envelope (e-sign or paper) with its parties, secured party, external id and deadline."""

        def call(hook: Hook) -> None:
            register_envelope(runtime.db, actor, data, on_commit=hook)

        return await mutate(request, runtime, actor.org_id, json_digest(await request.body()), 201, call)

    @get(
        "/",
        opt={"scope": "envelopes:read"},
        sync_to_thread=True,
        responses=answers(200, EnvelopePage, READ_ERRORS, "One page of envelopes"),
    )
    def index(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        principal: NamedDependency[Principal],
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
        status: FromQuery[str | None] = None,
        vault_state: FromQuery[str | None] = None,
        kind: FromQuery[str | None] = None,
        external_id: FromQuery[str | None] = None,
        created_after: FromQuery[datetime | None] = None,
        created_before: FromQuery[datetime | None] = None,
        updated_after: FromQuery[datetime | None] = None,
        updated_before: FromQuery[datetime | None] = None,
    ) -> dict[str, Any]:
        """Your organisation's envelopes, oldest first (created_at, id), a page at a time (``next_cursor``)."""
        for name in ("created_after", "created_before", "updated_after", "updated_before"):
            check_date_time(request.query_params.get(name), name)
        where = EnvelopeFilter(
            status, vault_state, kind, external_id, created_after, created_before, updated_after, updated_before
        )
        return list_envelopes(runtime.custody(), principal.org_id, where, cursor, limit)

    @get(
        "/{envelope_id:str}",
        opt={"scope": "envelopes:read"},
        sync_to_thread=True,
        responses=answers(200, EnvelopeView, (*READ_ERRORS, 304), "The envelope, with its ETag"),
    )
    def read(
        self,
        request: Request[Any, Any, Any],
        envelope_id: FromPath[str],
        runtime: NamedDependency[Runtime],
        principal: NamedDependency[Principal],
    ) -> Response[Any]:
        """The envelope with its states, staged uploads and, once vaulted, its authoritative copy."""
        view, tag = show_envelope(runtime.custody(), principal.org_id, envelope_id)
        return conditional(request, view, tag)

    @get(
        "/{envelope_id:str}/status",
        opt={"scope": "envelopes:read"},
        sync_to_thread=True,
        responses=answers(200, EnvelopeStatus, (*READ_ERRORS, 304), "The states, with the ETag"),
    )
    def status(
        self,
        request: Request[Any, Any, Any],
        envelope_id: FromPath[str],
        runtime: NamedDependency[Runtime],
        principal: NamedDependency[Principal],
    ) -> Response[Any]:
        """Status only, for polling: id, status, vault_state, revision, updated_at (same ETag as the envelope)."""
        view, tag = envelope_status(runtime.custody(), principal.org_id, envelope_id)
        return conditional(request, view, tag)

    @post(
        "/{envelope_id:str}/upload",
        opt={"scope": "envelopes:write"},
        responses=answers(201, EnvelopeView, UPLOAD_ERRORS, "Staged"),
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        envelope_id: FromPath[str],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
    ) -> Response[Any]:
        """Stage a pre-signed PDF for a paper envelope (an empty vault-in-upload later vaults what is staged), or
        the document to sign for an e-sign draft (its recipients' fields must fall on its pages)."""
        uploads, _, digest = await read_uploads(request, runtime.settings.edge.spool_memory_bytes)
        precondition = if_match(request)

        def call(hook: Hook) -> None:
            stage_document(runtime.custody(), actor, envelope_id, uploads, if_match=precondition, on_commit=hook)

        try:
            return await mutate(request, runtime, actor.org_id, digest, 201, call)
        finally:
            close_uploads(uploads)

    @post(
        "/{envelope_id:str}/void",
        opt={"scope": "envelopes:write"},
        status_code=200,
        responses=answers(200, EnvelopeView, WRITE_ERRORS, "Voided"),
    )
    async def void(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[VoidIn],
        envelope_id: FromPath[str],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
    ) -> Response[Any]:
        """Cancel an envelope that is not vaulted (draft, sent or awaiting_upload), for a stated reason; a sent
        envelope's ceremony ends for every recipient."""
        precondition = if_match(request)

        def call(hook: Hook) -> None:
            void_envelope(runtime.custody(), actor, envelope_id, data.reason, if_match=precondition, on_commit=hook)

        return await mutate(request, runtime, actor.org_id, json_digest(await request.body()), 200, call)
