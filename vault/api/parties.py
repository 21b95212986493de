"""``/envelopes/:id/amendments`` and ``/envelopes/:id/paper-in-attestation``: what stands beside the record.

An amendment body is JSON ``{"type", "data"}``, or ``multipart/form-data`` with that object as the ``metadata``
part and the signed PDFs as ``document`` parts (read as vault-in reads them, spooled and hashed once). Both
mutations answer the envelope with its new ETag, under Idempotency-Key and If-Match like every mutation; the
services are :mod:`vault.amendments` and :mod:`vault.paper_in`.
"""

from __future__ import annotations

import json
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from compliance.errors import InvalidInput
from compliance.ledger.events import Actor
from vault.amendments import amend, list_amendments
from vault.api.conventions import Hook, if_match, json_digest, mutate
from vault.api.schemas import READ_ERRORS, UPLOAD_ERRORS, WRITE_ERRORS, AmendmentList, EnvelopeView, answers
from vault.api.upload_body import close_uploads, read_uploads
from vault.field_limits import check_json_depth
from vault.paper_in import Attestation, attest_paper_in
from vault.runtime import Runtime
from vault.vault_in import Upload


async def _amendment_body(request: Request[Any, Any, Any], memory_bytes: int) -> tuple[list[Upload], Any, str]:
    """The PDFs (none for a JSON body), the ``{"type", "data"}`` object, and the body's digest."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        uploads, metadata, digest = await read_uploads(request, memory_bytes)
        if metadata is None:
            close_uploads(uploads)
            raise InvalidInput("Request.Invalid", 'the metadata part holds {"type", "data"}', field="metadata")
        return uploads, metadata, digest
    if media_type != "application/json":
        raise InvalidInput(
            "Request.UnsupportedMediaType", "send application/json or multipart/form-data", content_type=media_type
        )
    raw = await request.body()
    check_json_depth(raw, "body")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidInput("Request.Invalid", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput("Request.Invalid", 'the body is an object {"type", "data"}')
    return [], body, json_digest(raw)


class PartiesController(Controller):
    path = "/envelopes/{envelope_id:str}"
    tags = ["Amendments and attestations"]

    @post(
        "/amendments",
        opt={"scope": "vault:write"},
        responses=answers(201, EnvelopeView, UPLOAD_ERRORS, "Recorded beside the authoritative copy"),
    )
    async def amend(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        envelope_id: FromPath[str],
    ) -> Response[Any]:
        """Record a modification or assumption (and its signed PDFs, vaulted write-once); the authoritative
        bytes are never altered."""
        uploads, body, digest = await _amendment_body(request, runtime.settings.edge.spool_memory_bytes)
        precondition = if_match(request)

        def call(hook: Hook) -> None:
            amend(
                runtime.custody(),
                actor,
                envelope_id,
                body.get("type"),
                body.get("data"),
                uploads,
                if_match=precondition,
                on_commit=hook,
            )

        try:
            return await mutate(request, runtime, actor.org_id, digest, 201, call)
        finally:
            close_uploads(uploads)

    @get(
        "/amendments",
        opt={"scope": "vault:read"},
        sync_to_thread=True,
        responses=answers(200, AmendmentList, READ_ERRORS, "The amendments, in the order recorded"),
    )
    def amendments(
        self, runtime: NamedDependency[Runtime], actor: NamedDependency[Actor], envelope_id: FromPath[str]
    ) -> dict[str, Any]:
        """The envelope's amendments with their documents' hashes and versions."""
        return list_amendments(runtime.custody(), actor.org_id, envelope_id)

    @post(
        "/paper-in-attestation",
        opt={"scope": "vault:write"},
        responses=answers(201, EnvelopeView, WRITE_ERRORS, "Attested"),
    )
    async def attest(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[Attestation],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        envelope_id: FromPath[str],
    ) -> Response[Any]:
        """The custodian's attestation about a paper envelope's wet-ink original: held or destroyed, when, by
        whom. Custody evidence only: it does not make the scan a transferable record (UETA §16(a)(2))."""
        precondition = if_match(request)

        def call(hook: Hook) -> None:
            attest_paper_in(runtime.custody(), actor, envelope_id, data, if_match=precondition, on_commit=hook)

        return await mutate(request, runtime, actor.org_id, json_digest(await request.body()), 201, call)
