"""Reading PDFs out of a request body: raw ``application/pdf`` or ``multipart/form-data``.

A raw body is one PDF (optional ``X-Content-SHA256`` header and ``?filename=``). A multipart body has one or more
``document`` file parts (the n-th may have a ``sha256_<n>`` field) and an optional ``metadata`` JSON part.
Also returns the body's digest for the Idempotency-Key fingerprint.
"""

from __future__ import annotations

import json
from typing import Any

from litestar import Request
from litestar.datastructures import UploadFile

from compliance.errors import InvalidInput
from vault.api.conventions import parts_digest, raw_digest
from vault.vault_in import Upload


def _metadata(raw: Any) -> dict[str, Any]:
    try:
        metadata = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        raise InvalidInput("Request.InvalidMetadata", "metadata must be a JSON object", field="metadata") from None
    if not isinstance(metadata, dict):
        raise InvalidInput("Request.InvalidMetadata", "metadata must be a JSON object", field="metadata")
    return metadata


async def read_uploads(
    request: Request[Any, Any, Any], *, empty_ok: bool = False
) -> tuple[list[Upload], dict[str, Any] | None, str]:
    """The PDFs, the caller's metadata, and the body digest. ``empty_ok``: no body (and no Content-Type) is
    no PDFs, which vault-in-upload takes as "vault what was staged"."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        try:
            form = await request.form()
        except (UnicodeDecodeError, ValueError):  # Litestar decodes a part without filename as UTF-8 text
            raise InvalidInput(
                "Request.InvalidPart", "multipart parts must be files with a filename, or UTF-8 fields"
            ) from None
        parts: list[tuple[str, str | None, bytes]] = []
        uploads: list[Upload] = []
        metadata = None
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read()
                parts.append((name, value.filename, data))
            else:
                data = str(value).encode("utf-8", "surrogatepass")
                parts.append((name, None, data))
        documents = form.getall("document", [])
        if not documents:
            raise InvalidInput("Document.Missing", "a multipart body needs at least one document part")
        for position, part in enumerate(documents):
            if not isinstance(part, UploadFile):
                raise InvalidInput("Request.InvalidPart", "each document part must be a file", field="document")
            sha = form.get(f"sha256_{position}")
            await part.seek(0)
            uploads.append(
                Upload(
                    part.filename or f"document-{position}.pdf",
                    await part.read(),
                    sha if isinstance(sha, str) else None,
                )
            )
        if "metadata" in form:
            metadata = _metadata(form["metadata"])
        return uploads, metadata, parts_digest(parts)
    body = await request.body()
    if empty_ok and not body and not content_type:  # no body at all; an empty application/pdf is Document.Empty
        return [], None, raw_digest(body)
    if content_type not in {"application/pdf", "application/octet-stream"}:
        raise InvalidInput(
            "Request.UnsupportedMediaType",
            "send application/pdf or multipart/form-data",
            content_type=content_type,
        )
    filename = request.query_params.get("filename") or "document.pdf"
    return [Upload(filename, body, request.headers.get("x-content-sha256"))], None, raw_digest(body)
