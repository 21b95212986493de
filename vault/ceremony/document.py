"""The document an e-sign envelope's recipients sign: vetted like any upload, staged while the envelope is a draft.

One PDF per envelope; a new upload in draft replaces the old one. It is refused if it carries signatures already
(the ceremony's seal must be the document's only signature) or if a field of the roster falls outside its pages.
The bytes stay in the staging bucket (never the authoritative one) until the sealed PDF is vaulted.
"""

from __future__ import annotations

from typing import IO

from pypdf import PdfReader

from compliance.errors import Conflict, InvalidInput
from compliance.ledger.events import Actor
from storage.ids import utcnow
from storage.models import Ceremony, Envelope
from vault.ceremony.roster import check_fields_on_pages, roster
from vault.custody import Custody, OnCommit
from vault.envelopes import get_envelope, lock_envelope
from vault.expiry import settle
from vault.lifecycle import check_if_match, require_not_due, touch
from vault.staging import put_staged, remove_staged, stage_upload
from vault.vault_in import Upload, check_uploads
from vault.vault_in_plan import safe_filename


def page_sizes(upload: Upload) -> list[list[float]]:
    """Each page's visible size (its crop box) in points, from a document the vetting already accepted."""
    with upload.open() as body:
        return pdf_page_sizes(body)


def pdf_page_sizes(body: IO[bytes]) -> list[list[float]]:
    reader = PdfReader(body)
    return [[float(page.cropbox.width), float(page.cropbox.height)] for page in reader.pages]


def _check_draft(envelope: Envelope) -> None:
    if envelope.status != "draft" or envelope.vault_state != "not_vaulted":
        raise Conflict(
            "Envelope.InvalidTransition",
            f"the document to sign is staged while the envelope is a draft; it is {envelope.status}",
            status=envelope.status,
            vault_state=envelope.vault_state,
        )


def stage_document(
    custody: Custody,
    actor: Actor,
    envelope_id: str,
    uploads: list[Upload],
    *,
    if_match: str | None = None,
    on_commit: OnCommit | None = None,
) -> None:
    """``POST .../upload``: a paper envelope's pre-signed PDF (:func:`vault.staging.stage_upload`), or an e-sign
    draft's document to sign."""
    settle(custody, actor.org_id, envelope_id)
    with custody.db.read_session() as session:
        envelope = get_envelope(session, actor.org_id, envelope_id)
    if envelope.kind == "paper":
        stage_upload(custody, actor, envelope_id, uploads, if_match=if_match, on_commit=on_commit)
        return
    _check_draft(envelope)
    if len(uploads) != 1:
        raise InvalidInput("Document.TooMany", "an e-sign envelope signs exactly one PDF")
    ((upload, digest, facts, _),) = check_uploads(custody, uploads, "upload", actor.org_id)
    if facts.signature_count:
        raise InvalidInput(
            "Ceremony.DocumentSigned", "the document to sign must not carry signatures: the seal is its only one"
        )
    pages = page_sizes(upload)
    with custody.db.read_session() as session:
        check_fields_on_pages(roster(session, envelope_id), pages)
    document_id, stored = put_staged(custody, actor.org_id, envelope_id, upload, digest)
    replaced: tuple[str, str] | None = None
    try:
        with custody.db.session() as session:
            envelope = lock_envelope(session, actor.org_id, envelope_id)
            check_if_match(envelope, if_match)
            now = utcnow()
            require_not_due(envelope, now)
            _check_draft(envelope)
            check_fields_on_pages(roster(session, envelope_id), pages)
            ceremony = session.get(Ceremony, envelope.id) or Ceremony(envelope_id=envelope.id, org_id=envelope.org_id)
            if ceremony.s3_key and ceremony.s3_version_id:
                replaced = (ceremony.s3_key, ceremony.s3_version_id)
            ceremony.document_id = document_id
            ceremony.filename = safe_filename(upload.filename, 0)
            ceremony.sha256 = digest
            ceremony.size = upload.size
            ceremony.s3_key = stored.key
            ceremony.s3_version_id = stored.version_id
            ceremony.pages = pages
            session.add(ceremony)
            touch(envelope, now)
            session.add(envelope)
            if on_commit is not None:
                on_commit(session, envelope)
    except BaseException:
        remove_staged(custody, stored.key, stored.version_id)
        raise
    if replaced is not None:
        remove_staged(custody, *replaced)
