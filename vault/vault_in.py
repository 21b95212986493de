"""Vault-in: an envelope's completed PDFs become its single authoritative copy.

Order of work, so that nothing is lost and nothing is half-vaulted:
1. every check that needs no write (envelope state, PDF structure, caller's SHA-256) — bad input changes nothing;
2. each PDF is written once to the WORM bucket (``If-None-Match: *``, server-checked SHA-256, COMPLIANCE lock)
   under a key derived from its hash — if this fails, no record claims the object;
3. one database transaction creates the record, its documents and the ledger event. If it fails after step 2,
   the retry lands on the same keys, the write-once put recognises the identical bytes, and the record is
   completed with the same object versions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from compliance.errors import Conflict, InvalidInput, Unavailable
from compliance.ledger.events import Actor, append_event
from storage.errors import ChecksumMismatch, StorageError
from storage.ids import iso, new_id, utcnow
from storage.keys import authoritative_key
from storage.models import Envelope, VaultedDocument, VaultRecord
from storage.object_store import StoredObject
from storage.settings import PdfSettings
from vault.envelopes import get_envelope, vault_record, vaulted_documents
from vault.pdf_inspect import PdfFacts, inspect_pdf
from vault.runtime import Runtime

MAX_DOCUMENTS = 20
SOURCES = {"signed": "esign", "upload": "paper"}


class _Raced(Exception):
    """Another vault-in of the same envelope committed between our checks and our transaction."""


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes
    expected_sha256: str | None = None


@dataclass(frozen=True)
class VaultInResult:
    record: VaultRecord
    documents: list[VaultedDocument]
    replayed: bool


def _check_uploads(uploads: list[Upload], source: str, pdf: PdfSettings) -> list[tuple[Upload, str, PdfFacts]]:
    if not uploads:
        raise InvalidInput("Document.Missing", "send at least one PDF")
    if len(uploads) > MAX_DOCUMENTS:
        raise InvalidInput("Document.TooMany", f"at most {MAX_DOCUMENTS} documents per envelope")
    checked = []
    for position, upload in enumerate(uploads):
        facts = inspect_pdf(upload.data, pdf)
        digest = hashlib.sha256(upload.data).hexdigest()
        expected = upload.expected_sha256
        if expected is not None and expected.lower() != digest:
            raise InvalidInput(
                "Document.HashMismatch",
                "the SHA-256 you sent does not match the bytes received",
                position=position,
                expected=expected,
                received=digest,
            )
        if source == "signed" and facts.signature_count == 0:
            raise InvalidInput(
                "Document.NotSigned",
                "vault-in-signed takes signed PDFs; this one has no signature",
                position=position,
            )
        checked.append((upload, digest, facts))
    return checked


def _replay_or_conflict(runtime: Runtime, envelope: Envelope, digests: list[str]) -> VaultInResult:
    """A second vault-in of the same bytes is a replay; anything else is a conflict."""
    with runtime.db.read_session() as session:
        record = vault_record(session, envelope.id)
        assert record is not None
        documents = vaulted_documents(session, record.id)
    if [doc.sha256 for doc in documents] == digests:
        return VaultInResult(record, documents, replayed=True)
    raise Conflict(
        "Vault.AlreadyVaulted",
        "this envelope already has an authoritative copy",
        envelope_id=envelope.id,
        authoritative_copy_id=record.id,
    )


def vault_in(
    runtime: Runtime,
    actor: Actor,
    envelope_id: str,
    uploads: list[Upload],
    *,
    source: str,
    caller_metadata: dict[str, Any] | None = None,
) -> VaultInResult:
    with runtime.db.read_session() as session:
        envelope = get_envelope(session, actor.org_id, envelope_id)
    if SOURCES[source] != envelope.kind:
        raise Conflict(
            "Vault.WrongFlow",
            f"vault-in-{source} is for {SOURCES[source]} envelopes; this one is {envelope.kind}",
            envelope_kind=envelope.kind,
        )
    checked = _check_uploads(uploads, source, runtime.settings.pdf)
    digests = [digest for _, digest, _ in checked]
    if envelope.vault_state != "not_vaulted":
        return _replay_or_conflict(runtime, envelope, digests)
    if envelope.status in {"voided", "expired"}:
        raise Conflict(
            "Envelope.NotVaultable", f"a {envelope.status} envelope cannot be vaulted", status=envelope.status
        )
    secured_party = (caller_metadata or {}).get("secured_party") or envelope.secured_party
    if not isinstance(secured_party, dict) or not secured_party.get("name"):
        raise InvalidInput(
            "Envelope.SecuredPartyRequired",
            "the secured party (assignee of record) must be named on the envelope or in the vault-in metadata",
            field="secured_party",
        )

    # Whole seconds: S3 keeps retention to the second, and the record must equal the lock exactly.
    retain_until = (utcnow() + timedelta(days=runtime.settings.vault.retention_days)).replace(microsecond=0)
    stored: list[StoredObject] = []
    for position, (upload, digest, _) in enumerate(checked):
        key = authoritative_key(envelope.org_id, envelope.id, position, digest)
        try:
            stored.append(runtime.authoritative.put_write_once(key, upload.data, retain_until=retain_until))
        except ChecksumMismatch as exc:
            raise InvalidInput("Document.HashMismatch", "the storage server refused the bytes' checksum") from exc
        except StorageError as exc:
            raise Unavailable("Storage.Unavailable", "object storage did not accept the document; retry") from exc

    try:
        return _record(
            runtime, actor, envelope.id, checked, stored, source, secured_party, caller_metadata, retain_until
        )
    except (IntegrityError, _Raced):
        # A concurrent vault-in of this envelope committed first.
        return _replay_or_conflict(runtime, envelope, digests)


def _record(
    runtime: Runtime,
    actor: Actor,
    envelope_id: str,
    checked: list[tuple[Upload, str, PdfFacts]],
    stored: list[StoredObject],
    source: str,
    secured_party: dict[str, Any],
    caller_metadata: dict[str, Any] | None,
    retain_until: datetime,
) -> VaultInResult:
    now = utcnow()
    with runtime.db.session() as session:
        envelope = get_envelope(session, actor.org_id, envelope_id)
        if envelope.vault_state != "not_vaulted":
            raise _Raced
        record = VaultRecord(
            id=new_id("ac"),
            envelope_id=envelope.id,
            org_id=envelope.org_id,
            source=source,
            retain_until=retain_until,
            vaulted_at=now,
            vaulted_by=actor.key_id or "",
        )
        session.add(record)
        session.flush()
        documents = [
            VaultedDocument(
                id=new_id("doc"),
                record_id=record.id,
                position=position,
                filename=upload.filename,
                sha256=digest,
                size=len(upload.data),
                page_count=facts.page_count,
                s3_bucket=runtime.authoritative.bucket,
                s3_key=obj.key,
                s3_version_id=obj.version_id,
            )
            for position, ((upload, digest, facts), obj) in enumerate(zip(checked, stored, strict=True))
        ]
        session.add_all(documents)
        envelope.vault_state = "vaulted"
        envelope.status = "completed"
        envelope.secured_party = secured_party
        envelope.revision += 1
        envelope.updated_at = now
        session.add(envelope)
        session.flush()
        append_event(
            session,
            actor=actor,
            envelope_id=envelope.id,
            event_type="vault.vaulted_in",
            occurred_at=now,
            data={
                "authoritative_copy_id": record.id,
                "source": source,
                "secured_party": secured_party,
                "retain_until": iso(record.retain_until),
                "caller_metadata": caller_metadata or {},
                "documents": [
                    {
                        "id": doc.id,
                        "filename": doc.filename,
                        "sha256": doc.sha256,
                        "size": doc.size,
                        "bucket": doc.s3_bucket,
                        "key": doc.s3_key,
                        "version_id": doc.s3_version_id,
                    }
                    for doc in documents
                ],
            },
        )
    return VaultInResult(record, documents, replayed=False)
