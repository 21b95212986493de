"""The paper flow's staging area: a pre-signed PDF uploaded now, vaulted later.

``upload`` vets each PDF exactly as vault-in does, stores it under ``staging/<org>/<env>/<upload_id>.pdf`` in the
staging bucket (no lock: staged bytes are not the authoritative copy) and registers it with an expiry. An empty
``vault-in-upload`` then vaults the staged documents: each is read back, its SHA-256 checked against the
register, and the bytes go through vault-in's normal path, written afresh by the write-once put (never
CopyObject, which would drop the lock). Expired staged documents are refused and swept away.

Staging and vaulting are serialised per envelope: vault-in's claim pins the staged set it read, under the
envelope's lock (a set that changed meanwhile is read again), and an upload that reaches its lock after a
claim is refused with 409 ``Vault.InProgress``. So an acknowledged upload is always in the vault-in that
follows it, never left behind by one.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from compliance.errors import Conflict, InvalidInput, Unavailable
from compliance.ledger.event_catalogue import DOCUMENT_STAGED
from compliance.ledger.events import Actor, append_event
from storage.errors import StorageError
from storage.ids import as_utc, iso, new_id, utcnow
from storage.keys import staging_key
from storage.models import Envelope, StagedDocument, VaultClaim
from storage.object_store import StoredObject
from vault.custody import Custody, OnCommit
from vault.envelopes import get_envelope, lock_envelope, staged_documents
from vault.expiry import settle
from vault.lifecycle import check_if_match, require_not_due, touch
from vault.retrieval import IntegrityFailure
from vault.upload_spool import SpooledDocument, spool_dir
from vault.vault_in import MAX_DOCUMENTS, OnVaulted, StagedChanged, Upload, VaultInResult, check_uploads, vault_in
from vault.vault_in_plan import check_claimable, safe_filename

log = logging.getLogger("evault.staging")
READS = 3  # reads of the staged set before a vault-in racing a stream of uploads gives up (409, retry)


def _check_stageable(envelope: Envelope) -> None:
    check_claimable(envelope, "upload")
    if envelope.vault_state != "not_vaulted" or envelope.status != "awaiting_upload":
        raise Conflict(
            "Envelope.InvalidTransition",
            f"uploads are taken while awaiting_upload; this envelope is {envelope.status}",
            status=envelope.status,
            vault_state=envelope.vault_state,
        )


def put_staged(
    custody: Custody, org_id: str, envelope_id: str, upload: Upload, digest: str
) -> tuple[str, StoredObject]:
    """Store one vetted upload in the staging bucket under a fresh id, unlocked: staged bytes are not the record."""
    upload_id = new_id("up")
    try:
        with upload.open() as body:
            stored = custody.staging_store.put_write_once_file(
                staging_key(org_id, envelope_id, upload_id), body, upload.size, digest, retain_until=None
            )
    except StorageError as exc:
        raise Unavailable("Storage.Unavailable", "object storage did not accept the upload; retry") from exc
    return upload_id, stored


def remove_staged(custody: Custody, key: str, version_id: str) -> None:
    """Best effort: the sweep retries registered rows, and an object without a row is left to a bucket rule."""
    try:
        custody.staging_store.delete_version(key, version_id)
    except StorageError as exc:
        log.warning("staged object %s not removed: %s", key, exc)


def _remove(custody: Custody, rows: list[StagedDocument]) -> None:
    for row in rows:
        remove_staged(custody, row.s3_key, row.s3_version_id)


def stage_upload(
    custody: Custody,
    actor: Actor,
    envelope_id: str,
    uploads: list[Upload],
    *,
    if_match: str | None = None,
    on_commit: OnCommit | None = None,
) -> list[StagedDocument]:
    checked = check_uploads(custody, uploads, "upload", actor.org_id)
    settle(custody, actor.org_id, envelope_id)
    with custody.db.read_session() as session:
        _check_stageable(get_envelope(session, actor.org_id, envelope_id))
    now = utcnow()
    expires_at = now + timedelta(seconds=custody.policy.staging_ttl_seconds)
    rows: list[StagedDocument] = []
    try:
        for position, (upload, digest, _, _) in enumerate(checked):
            upload_id, stored = put_staged(custody, actor.org_id, envelope_id, upload, digest)
            rows.append(
                StagedDocument(
                    id=upload_id,
                    org_id=actor.org_id,
                    envelope_id=envelope_id,
                    filename=safe_filename(upload.filename, position),
                    sha256=digest,
                    size=upload.size,
                    s3_bucket=custody.staging_store.bucket,
                    s3_key=stored.key,
                    s3_version_id=stored.version_id,
                    staged_at=now,
                    expires_at=expires_at,
                )
            )
        with custody.db.session() as session:
            envelope = lock_envelope(session, actor.org_id, envelope_id)
            check_if_match(envelope, if_match)
            require_not_due(envelope, now)
            _check_stageable(envelope)
            if session.get(VaultClaim, envelope.id) is not None:
                raise Conflict(
                    "Vault.InProgress",
                    "a vault-in of this envelope is in flight; uploads are closed",
                    envelope_id=envelope_id,
                    retry_after_seconds=custody.policy.claim_lease_seconds,
                )
            if len(staged_documents(session, envelope.id)) + len(rows) > MAX_DOCUMENTS:
                raise InvalidInput("Document.TooMany", f"at most {MAX_DOCUMENTS} documents per envelope")
            session.add_all(rows)
            touch(envelope, now)
            session.add(envelope)
            session.flush()
            append_event(
                session,
                actor=actor,
                envelope_id=envelope.id,
                event_type=DOCUMENT_STAGED,
                occurred_at=now,
                data={
                    "documents": [{"id": r.id, "filename": r.filename, "sha256": r.sha256} for r in rows],
                    "expires_at": iso(expires_at),
                },
            )
            if on_commit is not None:
                on_commit(session, envelope)
    except BaseException:
        _remove(custody, rows)
        raise
    return rows


def _read_staged(custody: Custody, row: StagedDocument) -> SpooledDocument:
    """The staged bytes, streamed into a spool (so a large one is not held in memory) and hashed on the way."""
    spool = SpooledDocument(spool_dir(), custody.spool_memory_bytes)
    try:
        for chunk in custody.staging_store.iter_read(row.s3_key, row.s3_version_id):
            spool.write(chunk)
    except StorageError as exc:
        spool.close()
        raise Unavailable("Storage.Unavailable", "a staged document could not be read; retry") from exc
    if spool.finish().sha256_hex != row.sha256:
        spool.close()
        raise IntegrityFailure("Vault.IntegrityFailure", "a staged document changed since upload", upload_id=row.id)
    return spool


def vault_in_staged(
    custody: Custody,
    actor: Actor,
    envelope_id: str,
    *,
    if_match: str | None = None,
    on_commit: OnVaulted | None = None,
) -> VaultInResult:
    """Vault what was staged, in upload order; an expired staged document is refused, not skipped."""
    settle(custody, actor.org_id, envelope_id)
    for _ in range(READS):
        try:
            return _vault_staged_once(custody, actor, envelope_id, if_match, on_commit)
        except StagedChanged:
            log.info("uploads staged to %s while it was being vaulted; reading the staged set again", envelope_id)
    raise Conflict(
        "Vault.InProgress",
        "uploads kept arriving while the staged documents were being vaulted; retry",
        envelope_id=envelope_id,
        retry_after_seconds=1,
    )


def _vault_staged_once(
    custody: Custody, actor: Actor, envelope_id: str, if_match: str | None, on_commit: OnVaulted | None
) -> VaultInResult:
    """One read of the staged set, vaulted only if it is still the whole set when the claim commits."""
    with custody.db.read_session() as session:
        envelope = get_envelope(session, actor.org_id, envelope_id)
        rows = staged_documents(session, envelope.id) if envelope.status == "awaiting_upload" else []
    if not rows and envelope.vault_state != "not_vaulted":
        raise Conflict(
            "Vault.AlreadyVaulted", "this envelope already has an authoritative copy", envelope_id=envelope_id
        )
    if not rows:
        # "Vault what was staged" is well formed; that nothing is staged is the envelope's state: 409.
        raise Conflict("Staging.Empty", "nothing is staged: send a PDF, or upload one first (POST .../upload)")
    now = utcnow()
    stale = [row.id for row in rows if as_utc(row.expires_at) <= now]
    if stale:
        raise Conflict("Staging.Expired", "staged documents expired; upload them again", upload_ids=stale)
    uploads: list[Upload] = []
    try:
        for row in rows:
            uploads.append(Upload(row.filename, _read_staged(custody, row), row.sha256))
        result = vault_in(
            custody,
            actor,
            envelope_id,
            uploads,
            source="upload",
            if_match=if_match,
            on_commit=on_commit,
            staged=[row.id for row in rows],
        )
    finally:
        for upload in uploads:
            upload.close()
    _remove(custody, rows)
    with custody.db.session() as session:
        for row in rows:
            if (current := session.get(StagedDocument, row.id)) is not None:
                session.delete(current)
    return result
