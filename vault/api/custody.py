"""Vault endpoints: vault-in (signed or uploaded), authoritative and copy URLs, vault-out.

A vault-in body is a raw ``application/pdf`` or ``multipart/form-data``, read as it streams in by
:mod:`vault.api.upload_body`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anyio import to_thread
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from compliance.ledger.events import Actor
from vault.api.upload_body import close_uploads, read_uploads
from vault.envelopes import describe, get_envelope
from vault.retrieval import authoritative_urls, issue_copies
from vault.runtime import Runtime
from vault.vault_in import VaultInResult, vault_in
from vault.vault_out import vault_out


def _vault_in_response(runtime: Runtime, actor: Actor, result: VaultInResult) -> Response[dict[str, Any]]:
    with runtime.db.read_session() as session:
        view = describe(session, get_envelope(session, actor.org_id, result.record.envelope_id))
    view["replayed"] = result.replayed
    return Response(view, status_code=200 if result.replayed else 201)


@dataclass
class VaultOutIn:
    reason: str
    transferee: dict[str, Any] | None = None
    note: str | None = None


class CustodyController(Controller):
    path = "/envelopes/{envelope_id:str}"
    tags = ["Vault"]

    async def _vault_in(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        envelope_id: FromPath[str],
        source: str,
    ) -> Response[dict[str, Any]]:
        uploads, metadata = await read_uploads(request, runtime.settings.edge.spool_memory_bytes)

        def run() -> Response[dict[str, Any]]:
            try:
                result = vault_in(
                    runtime.custody(), actor, envelope_id, uploads, source=source, caller_metadata=metadata
                )
            finally:
                close_uploads(uploads)
            return _vault_in_response(runtime, actor, result)

        return await to_thread.run_sync(run)

    @post("/vault-in-signed", opt={"scope": "vault:write"})
    async def vault_in_signed(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        envelope_id: FromPath[str],
    ) -> Response[dict[str, Any]]:
        """Vault a completed e-sign envelope's signed PDF(s) as the authoritative copy (manual / recovery)."""
        return await self._vault_in(request, runtime, actor, envelope_id, "signed")

    @post("/vault-in-upload", opt={"scope": "vault:write"})
    async def vault_in_upload(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        envelope_id: FromPath[str],
    ) -> Response[dict[str, Any]]:
        """Vault a paper envelope's uploaded PDF(s) as the authoritative copy."""
        return await self._vault_in(request, runtime, actor, envelope_id, "upload")

    @get("/vault/signed-url", opt={"scope": "vault:read"}, sync_to_thread=True)
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

    @get("/vault/copy/signed-url", opt={"scope": "vault:read"}, sync_to_thread=True)
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

    @post("/vault-out", opt={"scope": "vault:release"}, sync_to_thread=True, status_code=200)
    def release(
        self,
        data: JSONBody[VaultOutIn],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        envelope_id: FromPath[str],
    ) -> dict[str, Any]:
        """Release the authoritative copy (transfer, paper-out, payoff, other)."""
        vault_out(runtime.custody(), actor, envelope_id, data.reason, data.transferee, data.note)
        with runtime.db.read_session() as session:
            return describe(session, get_envelope(session, actor.org_id, envelope_id))
