"""Vault endpoints: vault-in (signed or uploaded), authoritative and copy URLs, vault-out.

A vault-in body is either one raw ``application/pdf`` (with optional ``X-Content-SHA256`` and ``?filename=``)
or ``multipart/form-data`` with one or more ``document`` file parts (each may have a ``sha256`` field
``sha256_<n>`` for the n-th) and an optional ``metadata`` JSON part.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from anyio import to_thread
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from compliance.errors import InvalidInput
from compliance.ledger.events import Actor
from vault.envelopes import describe, get_envelope
from vault.retrieval import authoritative_urls, issue_copies
from vault.runtime import Runtime
from vault.vault_in import Upload, VaultInResult, vault_in
from vault.vault_out import vault_out


async def _uploads(request: Request[Any, Any, Any]) -> tuple[list[Upload], dict[str, Any] | None]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form()
        metadata = None
        if "metadata" in form:
            try:
                metadata = json.loads(form["metadata"])
            except (TypeError, ValueError):
                raise InvalidInput(
                    "Request.InvalidMetadata", "metadata must be a JSON object", field="metadata"
                ) from None
            if not isinstance(metadata, dict):
                raise InvalidInput("Request.InvalidMetadata", "metadata must be a JSON object", field="metadata")
        uploads = []
        for position, part in enumerate(form.getall("document")):
            if not isinstance(part, UploadFile):
                raise InvalidInput("Request.InvalidPart", "each document part must be a file", field="document")
            sha = form.get(f"sha256_{position}")
            uploads.append(
                Upload(
                    part.filename or f"document-{position}.pdf",
                    await part.read(),
                    sha if isinstance(sha, str) else None,
                )
            )
        return uploads, metadata
    if content_type not in {"application/pdf", "application/octet-stream"}:
        raise InvalidInput(
            "Request.UnsupportedMediaType",
            "send application/pdf or multipart/form-data",
            content_type=content_type,
        )
    body = await request.body()
    filename = request.query_params.get("filename") or "document.pdf"
    return [Upload(filename, body, request.headers.get("x-content-sha256"))], None


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
        uploads, metadata = await _uploads(request)

        def run() -> Response[dict[str, Any]]:
            result = vault_in(runtime.custody(), actor, envelope_id, uploads, source=source, caller_metadata=metadata)
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
