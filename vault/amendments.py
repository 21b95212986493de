"""Amendments: a modification or an assumption recorded beside the authoritative copy, never in it.

The authoritative bytes stay as vaulted. An amendment is a typed JSON statement (``data``, bounded like every
ledger value) and, optionally, PDFs (vetted as vault-in vets them: structure, budget, embedded signatures),
each written once to the WORM bucket under ``amendments/<org>/<envelope>/<amendment>/`` with the record's
COMPLIANCE retention. With PDFs, the vault-in order holds (:mod:`vault.vault_in`): claim in a short transaction,
put with no transaction open, then lock again and turn the claim into the amendment, its ``vault.amended``
event and the request's idempotency record. A claim whose request died is taken over once its lease ran out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, func, select

from compliance.errors import Conflict, InvalidInput, Unavailable
from compliance.ledger.event_catalogue import AMENDED
from compliance.ledger.events import Actor, append_event
from storage.errors import ChecksumMismatch, StorageError
from storage.ids import as_utc, iso, new_id, utcnow
from storage.keys import amendment_key
from storage.models import Amendment, AmendmentClaim, Envelope, VaultRecord
from vault.custody import Custody, OnCommit
from vault.envelopes import get_envelope, lock_envelope, vault_record
from vault.field_limits import MAX_METADATA_BYTES, MAX_METADATA_DEPTH, check_json
from vault.lifecycle import check_if_match, touch
from vault.record_views import amendment_view, amendments_of
from vault.vault_in import Upload, check_uploads
from vault.vault_in_plan import safe_filename

TYPES = ("modification", "assumption")


def _check_request(kind: Any, data: Any) -> dict[str, Any]:
    if kind not in TYPES:
        raise InvalidInput("Amendment.InvalidType", f"type must be one of {TYPES}", field="type")
    if not isinstance(data, dict):
        raise InvalidInput("Request.InvalidField", "data must be a JSON object", field="data")
    check_json(data, "data", max_depth=MAX_METADATA_DEPTH, max_bytes=MAX_METADATA_BYTES)
    return data


def _amendable(session: Session, envelope: Envelope) -> VaultRecord:
    """Only a vaulted record in this vault's control is amended: not before vault-in, not after vault-out."""
    record = vault_record(session, envelope.id)
    if record is None:
        raise Conflict("Vault.NotVaulted", "this envelope has no authoritative copy to amend")
    if record.released_at is not None:
        raise Conflict(
            "Vault.AlreadyReleased", "the authoritative copy was released", released_at=iso(record.released_at)
        )
    if record.disposed_at is not None:
        raise Conflict("Retention.Disposed", "the authoritative copy was disposed of after its retention")
    return record


def _next_position(session: Session, envelope_id: str) -> int:
    count = session.exec(select(func.count()).select_from(Amendment).where(Amendment.envelope_id == envelope_id))
    return int(count.one())


def _record(
    session: Session,
    envelope: Envelope,
    actor: Actor,
    amendment_id: str,
    kind: str,
    data: dict[str, Any],
    documents: list[dict[str, Any]],
    now: datetime,
    on_commit: OnCommit | None,
) -> Amendment:
    amendment = Amendment(
        id=amendment_id,
        org_id=envelope.org_id,
        envelope_id=envelope.id,
        position=_next_position(session, envelope.id),
        type=kind,
        data=data,
        documents=documents,
        recorded_at=now,
        recorded_by=actor.key_id or "",
    )
    session.add(amendment)
    touch(envelope, now)
    session.add(envelope)
    session.flush()
    append_event(
        session,
        actor=actor,
        envelope_id=envelope.id,
        event_type=AMENDED,
        occurred_at=now,
        data={"amendment_id": amendment.id, "type": kind, "data": data, "documents": documents},
    )
    if on_commit is not None:
        on_commit(session, envelope)
    return amendment


def _claim(
    custody: Custody, actor: Actor, envelope_id: str, plan: dict[str, Any], if_match: str | None
) -> tuple[str, datetime]:
    """Commit the claim (or take over one whose lease ran out); the record's retention dates the objects."""
    now = utcnow()
    with custody.db.session() as session:
        envelope = lock_envelope(session, actor.org_id, envelope_id)
        check_if_match(envelope, if_match)
        record = _amendable(session, envelope)
        lease = now + timedelta(seconds=custody.policy.claim_lease_seconds)
        claim = session.get(AmendmentClaim, envelope.id)
        if claim is not None and as_utc(claim.lease_until) > now:
            raise Conflict(
                "Amendment.InProgress",
                "another amendment of this envelope is being written; retry",
                retry_after_seconds=custody.policy.claim_lease_seconds,
            )
        if claim is None:
            claim = AmendmentClaim(
                envelope_id=envelope.id, org_id=envelope.org_id, claim_id="", plan={}, lease_until=now
            )
        claim_id = new_id("amc")
        claim.claim_id, claim.plan, claim.lease_until = claim_id, plan, lease
        session.add(claim)
        return claim_id, as_utc(record.retain_until)


def _put(custody: Custody, uploads: list[Upload], plan: dict[str, Any], retain_until: datetime) -> list[str]:
    versions = []
    for upload, doc in zip(uploads, plan["documents"], strict=True):
        try:
            with upload.open() as body:
                stored = custody.authoritative.put_write_once_file(
                    doc["key"], body, upload.size, doc["sha256"], retain_until=retain_until
                )
        except ChecksumMismatch as exc:
            raise InvalidInput("Document.HashMismatch", "the storage server refused the bytes' checksum") from exc
        except StorageError as exc:
            raise Unavailable("Storage.Unavailable", "object storage did not accept the document; retry") from exc
        versions.append(stored.version_id)
    return versions


def _catch_up(
    custody: Custody, record: VaultRecord, plan: dict[str, Any], versions: list[str], written_until: datetime
) -> None:
    """Under the envelope's lock: a retention lengthened or a hold set while the PDFs were written applies to
    them too, before they are recorded (both are idempotent in storage, so a retry repeats them harmlessly)."""
    try:
        for doc, version in zip(plan["documents"], versions, strict=True):
            if as_utc(record.retain_until) > written_until:
                custody.authoritative.extend_retention(doc["key"], version, as_utc(record.retain_until))
            if record.legal_hold_reason is not None:
                custody.authoritative.set_legal_hold(doc["key"], version, True)
    except StorageError as exc:
        raise Unavailable("Storage.Unavailable", "object storage refused the amendment's lock; retry") from exc


def _end_claim(custody: Custody, envelope_id: str, claim_id: str) -> None:
    """Our attempt failed: the next amendment may take the claim over at once."""
    with custody.db.session() as session:
        claim = session.get(AmendmentClaim, envelope_id)
        if claim is not None and claim.claim_id == claim_id:
            session.delete(claim)


def amend(
    custody: Custody,
    actor: Actor,
    envelope_id: str,
    kind: Any,
    data: Any,
    uploads: list[Upload],
    *,
    if_match: str | None = None,
    on_commit: OnCommit | None = None,
) -> Amendment:
    """Record one amendment; its PDFs (if any) are vaulted write-once first."""
    data = _check_request(kind, data)
    with custody.db.read_session() as session:
        envelope = get_envelope(session, actor.org_id, envelope_id)
        _amendable(session, envelope)
    amendment_id = new_id("amd")
    if not uploads:
        with custody.db.session() as session:
            envelope = lock_envelope(session, actor.org_id, envelope_id)
            check_if_match(envelope, if_match)
            _amendable(session, envelope)
            return _record(session, envelope, actor, amendment_id, kind, data, [], utcnow(), on_commit)
    checked = check_uploads(custody, uploads, "upload", actor.org_id)
    org_id, envelope_key = envelope.org_id, envelope.id  # plain values: a rolled-back session expires rows
    plan: dict[str, Any] = {
        "amendment_id": amendment_id,
        "documents": [
            {
                "position": position,
                "filename": safe_filename(upload.filename, position),
                "sha256": digest,
                "size": upload.size,
                "pages": facts.page_count,
                "signatures": signatures,
                "key": amendment_key(org_id, envelope_key, amendment_id, position, digest),
            }
            for position, (upload, digest, facts, signatures) in enumerate(checked)
        ],
    }
    claim_id, retain_until = _claim(custody, actor, envelope_key, plan, if_match)
    try:
        versions = _put(custody, uploads, plan, retain_until)
        return _finish(custody, actor, envelope_key, claim_id, plan, versions, retain_until, kind, data, on_commit)
    except BaseException:
        _end_claim(custody, envelope_key, claim_id)
        raise


def _finish(
    custody: Custody,
    actor: Actor,
    envelope_id: str,
    claim_id: str,
    plan: dict[str, Any],
    versions: list[str],
    retain_until: datetime,
    kind: str,
    data: dict[str, Any],
    on_commit: OnCommit | None,
) -> Amendment:
    """Turn our claim into the amendment and its event, under the envelope's lock."""
    with custody.db.session() as session:
        current = session.get(AmendmentClaim, envelope_id)
        if current is None or current.claim_id != claim_id:
            raise Conflict("Amendment.InProgress", "the amendment's claim was taken over; retry")
        envelope = lock_envelope(session, actor.org_id, envelope_id)
        record = _amendable(session, envelope)  # released while the PDFs were written: nothing is recorded
        _catch_up(custody, record, plan, versions, retain_until)
        session.delete(current)
        documents = [
            {
                "id": new_id("doc"),
                "filename": doc["filename"],
                "sha256": doc["sha256"],
                "size": doc["size"],
                "pages": doc["pages"],
                "signatures": doc["signatures"],
                "bucket": custody.authoritative.bucket,
                "key": doc["key"],
                "version_id": version,
            }
            for doc, version in zip(plan["documents"], versions, strict=True)
        ]
        return _record(session, envelope, actor, plan["amendment_id"], kind, data, documents, utcnow(), on_commit)


def list_amendments(custody: Custody, org_id: str, envelope_id: str) -> dict[str, Any]:
    with custody.db.read_session() as session:
        envelope = get_envelope(session, org_id, envelope_id)
        return {
            "envelope_id": envelope.id,
            "amendments": [amendment_view(a) for a in amendments_of(session, envelope.id)],
        }
