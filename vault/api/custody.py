"""Vault endpoints: vault-in (signed, uploaded, or what was staged), authoritative and copy URLs, vault-out.

A vault-in body is a raw ``application/pdf`` or ``multipart/form-data``, read as it streams in by
:mod:`vault.api.upload_body`; an empty ``vault-in-upload`` vaults the documents staged by ``POST .../upload``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody
from sqlmodel import Session

from compliance.ledger.events import Actor
from vault.api.conventions import Hook, Outcome, envelope_outcome, if_match, json_digest, mutate
from vault.api.schemas import (
    READ_ERRORS,
    UPLOAD_ERRORS,
    WRITE_ERRORS,
    AuthoritativeUrls,
    CopyUrls,
    EnvelopeView,
    VaultInView,
    answers,
)
from vault.api.upload_body import close_uploads, read_uploads
from vault.listing import show_envelope
from vault.retrieval import authoritative_urls, issue_copies
from vault.runtime import Runtime
from vault.staging import vault_in_staged
from vault.vault_in import Vaulted, VaultInResult, vault_in
from vault.vault_out import vault_out


@dataclass
class VaultOutIn:
    reason: str
    transferee: dict[str, Any] | None = None
    note: str | None = None


def _replayed(runtime: Runtime, actor: Actor, result: VaultInResult) -> Outcome | None:
    """A vault-in that changed nothing (the same bytes again) answers 200 with ``replayed: true``."""
    if not result.replayed:
        return None
    view, tag = show_envelope(runtime.custody(), actor.org_id, result.record.envelope_id)
    return Outcome(200, {**view, "replayed": True}, {"ETag": tag})


def _vaulted_outcome(session: Session, vaulted: Vaulted, status: int, **extra: Any) -> Outcome:
    """A vault-in's answer, shaped from the rows its transaction just wrote: nothing is read back."""
    return envelope_outcome(session, vaulted.envelope, status, written=(vaulted.record, vaulted.documents), **extra)


VAULT_IN_ANSWERS = {
    **answers(201, VaultInView, UPLOAD_ERRORS, "Vaulted: the authoritative copy is written and recorded"),
    200: ResponseSpec(data_container=VaultInView, description="The same bytes again: a replay, nothing written"),
}


class CustodyController(Controller):
    path = "/envelopes/{envelope_id:str}"
    tags = ["Vault"]

    async def _vault_in(
        self, request: Request[Any, Any, Any], runtime: Runtime, actor: Actor, envelope_id: str, source: str
    ) -> Response[Any]:
        uploads, metadata, digest = await read_uploads(
            request, runtime.settings.edge.spool_memory_bytes, empty_ok=source == "upload"
        )
        precondition = if_match(request)

        def call(hook: Hook) -> Outcome | None:
            custody = runtime.custody()
            if not uploads:
                result = vault_in_staged(custody, actor, envelope_id, if_match=precondition, on_commit=hook)
            else:
                result = vault_in(
                    custody,
                    actor,
                    envelope_id,
                    uploads,
                    source=source,
                    caller_metadata=metadata,
                    if_match=precondition,
                    on_commit=hook,
                )
            return _replayed(runtime, actor, result)

        try:
            return await mutate(request, runtime, actor.org_id, digest, 201, call, _vaulted_outcome, replayed=False)
        finally:
            close_uploads(uploads)

    @post("/vault-in-signed", opt={"scope": "vault:write"}, responses=VAULT_IN_ANSWERS)
    async def vault_in_signed(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        envelope_id: FromPath[str],
    ) -> Response[Any]:
        """Vault a completed e-sign envelope's signed PDF(s) as the authoritative copy (manual / recovery)."""
        return await self._vault_in(request, runtime, actor, envelope_id, "signed")

    @post("/vault-in-upload", opt={"scope": "vault:write"}, responses=VAULT_IN_ANSWERS)
    async def vault_in_upload(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        envelope_id: FromPath[str],
    ) -> Response[Any]:
        """Vault a paper envelope's PDF(s) as the authoritative copy: from the body, or (empty body) as staged."""
        return await self._vault_in(request, runtime, actor, envelope_id, "upload")

    @get(
        "/vault/signed-url",
        opt={"scope": "vault:read"},
        sync_to_thread=True,
        responses=answers(200, AuthoritativeUrls, (*READ_ERRORS, 409), "Presigned URLs"),
    )
    def authoritative_url(
        self,
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        envelope_id: FromPath[str],
        document_id: FromQuery[str | None] = None,
    ) -> dict[str, Any]:
        """Short-lived download URL(s) of the authoritative copy, bound to the stored version."""
        issued = authoritative_urls(runtime.custody(), actor, envelope_id, document_id)
        return {"envelope_id": envelope_id, "documents": [url.as_json() for url in issued]}

    @get(
        "/vault/copy/signed-url",
        opt={"scope": "vault:read", "rate_policy": "copies"},
        sync_to_thread=True,
        responses=answers(200, CopyUrls, (*READ_ERRORS, 409), "New registered copies"),
    )
    def copy_url(
        self,
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        envelope_id: FromPath[str],
        document_id: FromQuery[str | None] = None,
    ) -> dict[str, Any]:
        """A new, registered, marked non-authoritative copy per document, by short-lived URL."""
        issued = issue_copies(runtime.custody(), actor, envelope_id, document_id)
        return {"envelope_id": envelope_id, "copies": [url.as_json() for url in issued]}

    @post(
        "/vault-out",
        opt={"scope": "vault:release"},
        status_code=200,
        responses=answers(200, EnvelopeView, WRITE_ERRORS, "Released"),
    )
    async def release(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[VaultOutIn],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        envelope_id: FromPath[str],
    ) -> Response[Any]:
        """Release the authoritative copy (transfer, paper-out, payoff, other)."""
        precondition = if_match(request)

        def call(hook: Hook) -> None:
            vault_out(
                runtime.custody(),
                actor,
                envelope_id,
                data.reason,
                data.transferee,
                data.note,
                if_match=precondition,
                on_commit=hook,
            )

        return await mutate(request, runtime, actor.org_id, json_digest(await request.body()), 200, call)
