"""Vault-in: an envelope's completed PDFs become its single authoritative copy.

Order of work, so that nothing is lost, nothing is half-vaulted, and a loser never writes:
1. every check that needs no write (envelope state, PDF structure, caller's SHA-256, what the record and its
   ledger entry will hold) — bad input changes nothing;
2. a short transaction locks the envelope and commits a claim (one per envelope) holding the whole plan: a
   concurrent vault-in of other bytes meets the claim and gets 409 before it writes anything;
3. each PDF is written once to the WORM bucket (``If-None-Match: *``, server-checked SHA-256, COMPLIANCE lock)
   under a key derived from its hash — no transaction is open during the upload;
4. a second transaction locks the envelope again, turns the claim into the record, its documents and the
   ledger event, and removes the claim. A request that dies between 3 and 4 leaves a claim that
   :mod:`vault.reconcile` completes from the plan (or releases, if the objects never arrived).
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, BinaryIO

from sqlalchemy import bindparam, delete, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, col, select

from compliance.errors import Conflict, InvalidInput, Unavailable
from compliance.ledger.event_catalogue import VAULTED_IN
from compliance.ledger.events import Actor, append_event
from compliance.signatures.pdf_validation import DocumentSignatures
from storage.db import insert_if_absent, insert_rows
from storage.errors import ChecksumMismatch, StorageError
from storage.ids import as_utc, iso, new_id, utcnow
from storage.keys import authoritative_key
from storage.models import Envelope, VaultClaim, VaultedDocument, VaultRecord
from vault.custody import Custody
from vault.envelopes import get_envelope, lock_envelope, staged_documents, vault_record, vaulted_documents
from vault.expiry import settle
from vault.field_limits import check_filename
from vault.lifecycle import check_if_match, expiry_due, require_not_due, transition
from vault.pdf_inspect import PdfFacts, inspect_pdf
from vault.retention import organisation_retention_days, vault_in_retention
from vault.secured_party import check_identity
from vault.upload_spool import SpooledDocument
from vault.vault_in_plan import build_plan, check_claimable

MAX_DOCUMENTS = 20
log = logging.getLogger("evault.vault_in")


class VaultInRaced(Exception):
    """Our claim is gone or the envelope changed: another request (or the reconciler) finished first."""


class StagedChanged(Exception):
    """An upload was staged after the staged set was read: the claim would leave it out, so none is made."""


@dataclass(frozen=True)
class Upload:
    """One document: its bytes in memory, or spooled (hashed once as it arrived, read through file handles)."""

    filename: str
    data: bytes | SpooledDocument
    expected_sha256: str | None = None

    @property
    def size(self) -> int:
        return self.data.size if isinstance(self.data, SpooledDocument) else len(self.data)

    def sha256_hex(self) -> str:
        if isinstance(self.data, SpooledDocument):
            return self.data.sha256_hex
        return hashlib.sha256(self.data).hexdigest()

    def open(self) -> BinaryIO:
        return self.data.open() if isinstance(self.data, SpooledDocument) else io.BytesIO(self.data)

    def close(self) -> None:
        """Remove a spool's file; bytes in memory need nothing."""
        if isinstance(self.data, SpooledDocument):
            self.data.close()


@dataclass(frozen=True)
class VaultInResult:
    record: VaultRecord
    documents: list[VaultedDocument]
    replayed: bool


@dataclass(frozen=True)
class Vaulted:
    """What a vault-in's record transaction wrote: the envelope as it now is, its record and its documents."""

    envelope: Envelope
    record: VaultRecord
    documents: list[VaultedDocument]


# Called inside the record's transaction, after the change: the outer ring shapes its answer from what was written
# and records the request's idempotency record there, so it commits with the change or not at all.
OnVaulted = Callable[[Session, Vaulted], None]


def _check_signatures(custody: Custody, result: DocumentSignatures, position: int) -> dict[str, Any]:
    """Refuse a broken or illegally modified signature (graded by the vetting), and, when the operator requires
    it, an untrusted signer. The graded result is kept with the record and in the ledger."""
    if not result.acceptable:
        raise InvalidInput(
            "Document.SignatureInvalid",
            "an embedded signature does not verify, or the document was changed after signing in a way "
            "its signatures do not permit",
            position=position,
            signatures=result.as_json(),
        )
    if custody.policy.require_trusted_signers and not all(v.trusted for v in result.verdicts):
        raise InvalidInput(
            "Document.SignerUntrusted",
            "a signer does not chain to the configured trust roots",
            position=position,
            signatures=result.as_json(),
        )
    return result.as_json()


def check_uploads(
    custody: Custody, uploads: list[Upload], source: str, org_id: str
) -> list[tuple[Upload, str, PdfFacts, dict[str, Any] | None]]:
    if not uploads:
        raise InvalidInput("Document.Missing", "send at least one PDF")
    if len(uploads) > MAX_DOCUMENTS:
        raise InvalidInput("Document.TooMany", f"at most {MAX_DOCUMENTS} documents per envelope")
    checked = []
    for position, upload in enumerate(uploads):
        check_filename(upload.filename, f"documents[{position}].filename")
        facts = inspect_pdf(upload.data, custody.pdf, org_id, custody.signer_trust_roots)
        digest = upload.sha256_hex()
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
        signatures = None if facts.signatures is None else _check_signatures(custody, facts.signatures, position)
        checked.append((upload, digest, facts, signatures))
    return checked


def _replay_or_conflict(custody: Custody, envelope_id: str, digests: list[str]) -> VaultInResult:
    """A second vault-in of the same bytes is a replay; anything else is a conflict."""
    with custody.db.read_session() as session:
        record = vault_record(session, envelope_id)
        if record is None:
            raise Conflict(
                "Vault.InProgress", "another vault-in of this envelope is in flight; retry", envelope_id=envelope_id
            )
        documents = vaulted_documents(session, record.id)
    if [doc.sha256 for doc in documents] == digests:
        return VaultInResult(record, documents, replayed=True)
    raise Conflict(
        "Vault.AlreadyVaulted",
        "this envelope already has an authoritative copy",
        envelope_id=envelope_id,
        authoritative_copy_id=record.id,
    )


def _claim(
    custody: Custody,
    actor: Actor,
    envelope_id: str,
    source: str,
    digests: list[str],
    plan: dict[str, Any],
    if_match: str | None,
    staged: list[str] | None,
) -> VaultClaim | None:
    """Commit our claim, or adopt an unfinished claim for the same bytes (a retry); None if already vaulted.

    ``staged`` (the staged uploads being vaulted, in order) must still be the envelope's whole staged set under
    the lock: once the claim commits, :func:`vault.staging.stage_upload` refuses, so none is left out."""
    with custody.db.session() as session:
        envelope = lock_envelope(session, actor.org_id, envelope_id)
        if envelope.vault_state != "not_vaulted":
            return None
        check_if_match(envelope, if_match)
        check_claimable(envelope, source)
        require_not_due(envelope, utcnow())
        if staged is not None and [row.id for row in staged_documents(session, envelope.id)] != staged:
            raise StagedChanged
        now = utcnow()
        claim = VaultClaim(
            envelope_id=envelope.id,
            org_id=envelope.org_id,
            claim_id=new_id("vc"),
            digests=digests,
            plan=plan,
            claimed_at=now,
            lease_until=now + timedelta(seconds=custody.policy.claim_lease_seconds),
        )
        if insert_if_absent(session, claim):  # the usual case: no claim yet
            return claim
        # Claims are deleted under the envelope's lock, which this transaction holds: the one in the way stays.
        existing = session.exec(select(VaultClaim).where(VaultClaim.envelope_id == envelope.id)).one()
        if existing.digests != digests or as_utc(existing.lease_until) > now:
            raise Conflict(
                "Vault.InProgress",
                "another vault-in of this envelope is in flight; retry",
                envelope_id=envelope_id,
                retry_after_seconds=custody.policy.claim_lease_seconds,
            )
        # A retry of the same bytes whose first attempt failed or died: it takes the claim over, so only
        # one request at a time ever puts this envelope's objects.
        existing.claim_id = new_id("vc")
        existing.lease_until = now + timedelta(seconds=custody.policy.claim_lease_seconds)
        session.add(existing)
        return existing


def _end_lease(custody: Custody, claim: VaultClaim) -> None:
    """Our attempt failed: let a retry of the same bytes take the claim over at once (best effort)."""
    try:
        with custody.db.session() as session:
            session.execute(
                update(VaultClaim)
                .where(col(VaultClaim.envelope_id) == claim.envelope_id, col(VaultClaim.claim_id) == claim.claim_id)
                .values(lease_until=utcnow())
            )
    except SQLAlchemyError as exc:  # the lease then simply runs out
        log.warning("could not end the lease of vault-in claim %s: %s", claim.claim_id, exc)


def _look(custody: Custody, org_id: str, envelope_id: str) -> tuple[Envelope, float]:
    """The envelope and its organisation's retention, in one read; a due expiry is applied first (rarely)."""
    with custody.db.read_session() as session:
        envelope = get_envelope(session, org_id, envelope_id)
        due = expiry_due(envelope, utcnow())
        retention_days = organisation_retention_days(session, envelope.org_id, custody.policy.retention_days)
    if due:
        settle(custody, org_id, envelope_id)
        with custody.db.read_session() as session:
            envelope = get_envelope(session, org_id, envelope_id)
    return envelope, retention_days


def vault_in(
    custody: Custody,
    actor: Actor,
    envelope_id: str,
    uploads: list[Upload],
    *,
    source: str,
    caller_metadata: dict[str, Any] | None = None,
    if_match: str | None = None,
    on_commit: OnVaulted | None = None,
    staged: list[str] | None = None,
) -> VaultInResult:
    """``if_match`` and ``staged`` are checked under the claim's lock; ``on_commit`` runs in the record's
    transaction."""
    envelope, retention_days = _look(custody, actor.org_id, envelope_id)
    check_claimable(envelope, source, vaulted_ok=True)
    checked = check_uploads(custody, uploads, source, actor.org_id)
    digests = [digest for _, digest, _, _ in checked]
    if envelope.vault_state != "not_vaulted":
        return _replay_or_conflict(custody, envelope.id, digests)
    # Whole seconds: S3 keeps retention to the second, and the record must equal the lock exactly.
    retain_until = vault_in_retention(retention_days, caller_metadata, utcnow())
    documents = [
        {
            "position": position,
            "filename": upload.filename,
            "sha256": digest,
            "size": upload.size,
            "page_count": facts.page_count,
            "key": authoritative_key(envelope.org_id, envelope.id, position, digest),
            "signatures": signatures,
        }
        for position, (upload, digest, facts, signatures) in enumerate(checked)
    ]
    plan = build_plan(envelope, actor, source, documents, caller_metadata, retain_until)
    with custody.db.read_session() as session:
        check_identity(session, plan["secured_party"])
    claim = _claim(custody, actor, envelope.id, source, digests, plan, if_match, staged)
    if claim is None:
        return _replay_or_conflict(custody, envelope.id, digests)

    try:
        versions = _put_documents(custody, claim, [upload for upload, _, _, _ in checked])
        return record_claim(custody, claim, versions, on_commit=on_commit)
    except (IntegrityError, VaultInRaced):
        return _replay_or_conflict(custody, envelope.id, digests)
    except Exception:
        _end_lease(custody, claim)
        raise


def _put_documents(custody: Custody, claim: VaultClaim, uploads: list[Upload]) -> list[str]:
    """Each document written once under its claimed key; no transaction is open meanwhile."""
    retain = datetime.fromisoformat(claim.plan["retain_until"])
    versions = []
    for upload, doc in zip(uploads, claim.plan["documents"], strict=True):
        try:
            with upload.open() as body:
                stored = custody.authoritative.put_write_once_file(
                    doc["key"], body, upload.size, doc["sha256"], retain_until=retain
                )
            versions.append(stored.version_id)
        except ChecksumMismatch as exc:
            raise InvalidInput("Document.HashMismatch", "the storage server refused the bytes' checksum") from exc
        except StorageError as exc:
            raise Unavailable("Storage.Unavailable", "object storage did not accept the document; retry") from exc
    return versions


def document_data(doc: VaultedDocument) -> dict[str, Any]:
    """A vaulted document as the ledger records it: its identity, where its locked version lives, its signatures."""
    return {
        "id": doc.id,
        "filename": doc.filename,
        "sha256": doc.sha256,
        "size": doc.size,
        "bucket": doc.s3_bucket,
        "key": doc.s3_key,
        "version_id": doc.s3_version_id,
        "signatures": doc.signatures,
    }


_DELETE_CLAIM = delete(VaultClaim).where(  # built once (every vault-in runs it)
    col(VaultClaim.envelope_id) == bindparam("envelope_id"), col(VaultClaim.claim_id) == bindparam("claim_id")
)


def record_claim(
    custody: Custody,
    claim: VaultClaim,
    versions: list[str],
    *,
    reconciled: bool = False,
    on_commit: OnVaulted | None = None,
) -> VaultInResult:
    """Turn the claim into the record, its documents and the ledger event, in one transaction.

    ``claim`` is the claim as its holder read or made it (its plan does not change while its ``claim_id`` stands):
    it is deleted under the envelope's lock only if it is still ours. The record and its documents are written
    as plain inserts; the envelope and the ledger entry are flushed once, by the append."""
    now = utcnow()
    plan = claim.plan
    with custody.db.session() as session:
        envelope = lock_envelope(session, claim.org_id, claim.envelope_id)
        if envelope.vault_state != "not_vaulted":
            raise VaultInRaced
        ours = {"envelope_id": claim.envelope_id, "claim_id": claim.claim_id}
        if session.connection().execute(_DELETE_CLAIM, ours).rowcount != 1:
            raise VaultInRaced
        actor = Actor(**plan["actor"])
        record = VaultRecord(
            id=new_id("ac"),
            envelope_id=envelope.id,
            org_id=envelope.org_id,
            source=plan["source"],
            retain_until=datetime.fromisoformat(plan["retain_until"]),
            vaulted_at=now,
            vaulted_by=actor.key_id or "",
        )
        documents = [
            VaultedDocument(
                id=new_id("doc"),
                record_id=record.id,
                position=doc["position"],
                filename=doc["filename"],
                sha256=doc["sha256"],
                size=doc["size"],
                page_count=doc["page_count"],
                s3_bucket=custody.authoritative.bucket,
                s3_key=doc["key"],
                s3_version_id=version,
                signatures=doc.get("signatures"),
            )
            for doc, version in zip(plan["documents"], versions, strict=True)
        ]
        insert_rows(session, [record])
        insert_rows(session, documents)
        # An e-sign ceremony completed the envelope already (its last signature); vault-in then only vaults it.
        completed = None if envelope.status == "completed" else "completed"
        transition(envelope, now, status=completed, vault_state="vaulted")
        envelope.secured_party = plan["secured_party"]
        session.add(envelope)
        data: dict[str, Any] = {
            "authoritative_copy_id": record.id,
            "source": record.source,
            "secured_party": plan["secured_party"],
            "retain_until": iso(record.retain_until),
            "caller_metadata": plan["caller_metadata"],
            "documents": [document_data(doc) for doc in documents],
        }
        if reconciled:
            data["reconciled"] = True
        with session.no_autoflush:  # the envelope's UPDATE goes in the append's one flush, with the entry
            append_event(
                session, actor=actor, envelope_id=envelope.id, event_type=VAULTED_IN, occurred_at=now, data=data
            )
        if on_commit is not None:
            on_commit(session, Vaulted(envelope, record, documents))
    return VaultInResult(record, documents, replayed=False)
