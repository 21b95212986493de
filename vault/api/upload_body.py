"""Reading a vault-in body once, as it streams in: each document is hashed and spooled while it arrives.

A raw ``application/pdf`` body is one document (``X-Content-SHA256`` and ``?filename=`` optional); a
``multipart/form-data`` body has ``document`` file parts (the n-th may have a ``sha256_<n>`` field) and an
optional ``metadata`` JSON part. Nothing holds a whole document in memory: a document's bytes go to a
:class:`~vault.upload_spool.SpooledDocument` (1 MiB in memory, then a file in a private directory), and the
small text fields are bounded (``MAX_FIELD_BYTES``). The spools are closed (their files removed) when the
request's work is done (:func:`close_uploads`). The body's digest for the Idempotency-Key fingerprint comes
from the same single pass: each part's name, filename and SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from litestar import Request
from multipart import MultipartSegment, ParserError, ParserLimitReached, PushMultipartParser

from compliance import strict_json
from compliance.errors import InvalidInput
from vault.api.conventions import parts_digest, raw_digest
from vault.field_limits import check_filename, check_json_depth, check_line
from vault.upload_spool import SpooledDocument, spool_dir
from vault.vault_in import MAX_DOCUMENTS, Upload

SHA256_HEX = re.compile("[0-9a-fA-F]{64}")
MAX_FIELD_BYTES = 64 * 1024  # a text part (metadata, a sha256 field)
MAX_PARTS = 2 * MAX_DOCUMENTS + 2


def _metadata(raw: bytes) -> dict[str, Any]:
    try:
        check_json_depth(raw, "metadata")  # before json.loads, which recurses
        metadata = json.loads(raw)
    except InvalidInput as exc:
        raise InvalidInput("Request.InvalidMetadata", exc.message, **{**exc.details, "reason": exc.code}) from None
    except (TypeError, ValueError, RecursionError):
        raise InvalidInput("Request.InvalidMetadata", "metadata must be a JSON object", field="metadata") from None
    if not isinstance(metadata, dict):
        raise InvalidInput("Request.InvalidMetadata", "metadata must be a JSON object", field="metadata")
    return metadata


def close_uploads(uploads: list[Upload]) -> None:
    for upload in uploads:
        upload.close()


async def _raw(request: Request[Any, Any, Any], memory_bytes: int) -> SpooledDocument:
    spool = SpooledDocument(spool_dir(), memory_bytes)
    try:
        async for chunk in request.stream():
            if chunk:
                spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    return spool.finish()


async def _multipart(
    stream: AsyncIterator[bytes], boundary: bytes, memory_bytes: int
) -> tuple[list[Upload], dict[str, Any] | None, str]:
    documents: list[tuple[str, SpooledDocument]] = []
    parts: list[tuple[str, str | None, str]] = []  # name, filename, SHA-256: the idempotency fingerprint
    fields: dict[str, bytes] = {}
    spool: SpooledDocument | None = None
    text = bytearray()
    segment: MultipartSegment | None = None
    try:
        with PushMultipartParser(boundary, max_segment_count=MAX_PARTS) as parser:
            async for chunk in stream:
                for event in parser.parse(chunk):
                    if isinstance(event, MultipartSegment):
                        segment, text = event, bytearray()
                        if event.name == "document":  # a file part, named or not (it gets document-<n>.pdf)
                            spool = SpooledDocument(spool_dir(), memory_bytes)
                    elif event:
                        if spool is not None:
                            spool.write(event)
                        else:
                            text += event
                            if len(text) > MAX_FIELD_BYTES:
                                raise InvalidInput(
                                    "Request.FieldTooLong",
                                    f"a form field is larger than {MAX_FIELD_BYTES} bytes",
                                    field=segment.name if segment else None,
                                    limit=MAX_FIELD_BYTES,
                                )
                    elif segment is not None:  # end of the part
                        if spool is not None:
                            documents.append((segment.filename or "", spool.finish()))
                            parts.append((segment.name, segment.filename, spool.sha256_hex))
                            spool = None
                        else:
                            fields[segment.name] = bytes(text)
                            parts.append((segment.name, segment.filename, hashlib.sha256(text).hexdigest()))
                        segment = None
                if parser.closed:
                    break
            if not parser.closed:
                raise InvalidInput("Request.Invalid", "the multipart body ended early")
        if not documents:
            raise InvalidInput("Document.Missing", "a multipart body needs at least one document part")
        metadata = _metadata(fields["metadata"]) if "metadata" in fields else None
        uploads = []
        for position, (filename, doc) in enumerate(documents):
            sha = fields.get(f"sha256_{position}")
            expected = sha.decode("ascii", "replace") if sha is not None else None
            check_line(expected, f"sha256_{position}", 64 * 2)
            uploads.append(Upload(filename or f"document-{position}.pdf", doc, expected))
    except BaseException as exc:  # a refused body leaves no spool behind, finished or not
        for doc in [d for _, d in documents] + ([spool] if spool is not None else []):
            doc.close()
        if isinstance(exc, (ParserError, ParserLimitReached)):
            raise InvalidInput("Request.Invalid", f"invalid multipart/form-data: {exc}") from None
        raise
    return uploads, metadata, parts_digest(parts)


STAGED_BODY_MAX = 64  # {"staged": true} with room for whitespace


def _says_staged(body: bytes) -> bool:
    try:
        return bool(strict_json.loads(body) == {"staged": True})
    except ValueError:
        return False


async def read_uploads(
    request: Request[Any, Any, Any], memory_bytes: int, *, empty_ok: bool = False
) -> tuple[list[Upload], dict[str, Any] | None, str]:
    """The documents (spooled and hashed), the caller's metadata and the body's digest; the caller closes the
    documents (:func:`close_uploads`). ``empty_ok``: no body and no Content-Type is no documents, which
    vault-in-upload takes as "vault what was staged" (an empty ``application/pdf`` is ``Document.Empty``)."""
    stated = request.headers.get("x-content-sha256")
    if stated is not None and not SHA256_HEX.fullmatch(stated):
        raise InvalidInput("Request.InvalidHeader", "X-Content-SHA256 is 64 hex digits", field="X-Content-SHA256")
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        boundary = request.content_type[1].get("boundary")
        if not boundary:
            raise InvalidInput("Request.Invalid", "multipart boundary missing in Content-Type")
        if (named := request.query_params.get("filename")) is not None:
            check_filename(named, "filename")  # unused (each part names itself) but as the document says
        return await _multipart(request.stream(), boundary.encode("latin-1"), memory_bytes)
    staged_ok = empty_ok and media_type in ("", "application/json")
    if media_type not in {"application/pdf", "application/octet-stream"} and not staged_ok:
        raise InvalidInput(
            "Request.UnsupportedMediaType", "send application/pdf or multipart/form-data", content_type=media_type
        )
    spool = await _raw(request, memory_bytes)
    if not media_type:  # vault-in-upload of what was staged: the body must be empty
        spool.close()
        if spool.size:
            raise InvalidInput(
                "Request.UnsupportedMediaType", "send application/pdf or multipart/form-data", content_type=""
            )
        return [], None, raw_digest(spool.sha256_hex)
    if media_type == "application/json":  # the same, said explicitly: exactly {"staged": true}
        body = spool.head(min(spool.size, STAGED_BODY_MAX))
        spool.close()
        if spool.size > STAGED_BODY_MAX or not _says_staged(body):
            raise InvalidInput("Request.Invalid", 'a JSON body here is exactly {"staged": true}', field="staged")
        return [], None, raw_digest(hashlib.sha256(b"").hexdigest())
    filename = request.query_params.get("filename") or "document.pdf"
    upload = Upload(filename, spool, stated)
    return [upload], None, raw_digest(spool.sha256_hex)
