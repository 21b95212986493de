"""Retention and legal hold of an authoritative copy: lengthened, held and released, each change a ledger event.

The objects' S3 Object Lock state is the enforcement; the record and its events say what it should be, so the
verifier can compare the two. Every change locks the envelope row, changes the objects while holding it, then
commits the record with its event: a failure in storage changes nothing of record (a retry finishes the job,
since lengthening and setting a hold are idempotent in storage). See docs/retention.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from compliance.errors import Conflict, InvalidInput, Unavailable
from compliance.ledger.event_catalogue import LEGAL_HOLD_CLEARED, LEGAL_HOLD_SET, RETENTION_EXTENDED
from compliance.ledger.events import Actor, append_event
from storage.errors import StorageError
from storage.ids import as_utc, iso, utcnow
from storage.models import Envelope, Organisation, VaultRecord
from vault.custody import Custody, OnCommit
from vault.envelopes import lock_envelope, vault_record, vaulted_documents
from vault.field_limits import check_line
from vault.lifecycle import check_if_match, touch
from vault.record_views import amendment_objects

MAX_REASON = 500
MAX_RETENTION = timedelta(days=100 * 366)  # beyond any record-keeping rule; also keeps the date arithmetic finite


def parse_retain_until(value: str, now: datetime) -> datetime:
    """An RFC 3339 date with its offset, in the future (at most 100 years); whole seconds, as S3 keeps it
    (rounded up, never down)."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise InvalidInput(
            "Retention.InvalidDate", "retain_until is an RFC 3339 date-time with its offset", field="retain_until"
        )
    parsed = as_utc(parsed)
    if parsed > now + MAX_RETENTION:
        raise InvalidInput("Retention.InvalidDate", "retain_until is at most 100 years away", field="retain_until")
    if parsed.microsecond:
        parsed = parsed.replace(microsecond=0) + timedelta(seconds=1)
    if parsed <= now:
        raise InvalidInput("Retention.InvalidDate", "retain_until must be in the future", field="retain_until")
    return parsed


def organisation_retention_days(session: Session, org_id: str, fallback: float) -> float:
    """The organisation's default retention (``evault org set-retention``), else the settings' one."""
    org = session.get(Organisation, org_id)
    return fallback if org is None or org.retention_days is None else org.retention_days


def vault_in_retention(retention_days: float, metadata: dict[str, Any] | None, now: datetime) -> datetime:
    """The default retention, or the longer ``retain_until`` the vault-in metadata asks for (never a shorter one)."""
    default = (now + timedelta(days=retention_days)).replace(microsecond=0)  # S3 keeps whole seconds
    asked = (metadata or {}).get("retain_until")
    if asked is None:
        return default
    if not isinstance(asked, str):
        raise InvalidInput("Retention.InvalidDate", "metadata.retain_until is an RFC 3339 string", field="retain_until")
    wanted = parse_retain_until(asked, now)
    if wanted < default:
        raise InvalidInput(
            "Retention.BelowDefault",
            "metadata.retain_until may lengthen the organisation's retention, never shorten it",
            field="retain_until",
            default_retain_until=iso(default),
        )
    return wanted


def _held_record(
    session: Session, actor: Actor, envelope_id: str, if_match: str | None
) -> tuple[Envelope, VaultRecord]:
    envelope = lock_envelope(session, actor.org_id, envelope_id)
    check_if_match(envelope, if_match)
    record = vault_record(session, envelope.id)
    if record is None:
        raise Conflict("Vault.NotVaulted", "this envelope has no authoritative copy")
    if record.disposed_at is not None:
        raise Conflict(
            "Retention.Disposed",
            "the authoritative copy was disposed of after its retention",
            disposed_at=iso(record.disposed_at),
        )
    return envelope, record


def _objects(session: Session, record: VaultRecord) -> list[tuple[str, str]]:
    """Every object version the record's retention and hold cover: its documents, then its amendments' PDFs."""
    documents = [(doc.s3_key, doc.s3_version_id) for doc in vaulted_documents(session, record.id)]
    return documents + amendment_objects(session, record.envelope_id)


def _unavailable(exc: StorageError) -> Unavailable:
    return Unavailable("Storage.Unavailable", f"object storage refused or failed the change; retry ({exc})")


def extend_retention(
    custody: Custody,
    actor: Actor,
    envelope_id: str,
    retain_until: str,
    *,
    if_match: str | None = None,
    on_commit: OnCommit | None = None,
) -> VaultRecord:
    """Lengthen the retention of every authoritative object version and of the record; never shorten it."""
    now = utcnow()
    wanted = parse_retain_until(retain_until, now)
    with custody.db.session() as session:
        envelope, record = _held_record(session, actor, envelope_id, if_match)
        current = as_utc(record.retain_until)
        if wanted <= current:
            raise Conflict(
                "Retention.CannotShorten",
                "COMPLIANCE-mode retention can only be lengthened: retain_until must be later than the current one",
                retain_until=iso(current),
                requested=iso(wanted),
            )
        try:
            for key, version in _objects(session, record):
                custody.authoritative.extend_retention(key, version, wanted)
        except StorageError as exc:
            raise _unavailable(exc) from exc
        record.retain_until = wanted
        touch(envelope, now)
        session.add(record)
        session.add(envelope)
        append_event(
            session,
            actor=actor,
            envelope_id=envelope.id,
            event_type=RETENTION_EXTENDED,
            occurred_at=now,
            data={
                "authoritative_copy_id": record.id,
                "retain_until": iso(wanted),
                "previous_retain_until": iso(current),
            },
        )
        if on_commit is not None:
            on_commit(session, envelope)
    return record


def set_legal_hold(
    custody: Custody,
    actor: Actor,
    envelope_id: str,
    reason: str,
    on: bool,
    *,
    if_match: str | None = None,
    on_commit: OnCommit | None = None,
) -> VaultRecord:
    """Set (``on``) or clear the legal hold of every authoritative object version, for a stated reason."""
    check_line(reason, "reason", MAX_REASON, required=True)
    if not reason.strip():
        raise InvalidInput(
            "LegalHold.ReasonRequired", "a legal hold is set and cleared for a stated reason", field="reason"
        )
    now = utcnow()
    with custody.db.session() as session:
        envelope, record = _held_record(session, actor, envelope_id, if_match)
        held = record.legal_hold_reason is not None
        if held == on:
            code = "LegalHold.AlreadySet" if on else "LegalHold.NotSet"
            raise Conflict(
                code,
                "the authoritative copy is already under legal hold" if on else "the authoritative copy is not held",
                since=iso(record.legal_hold_since) if record.legal_hold_since else None,
            )
        try:
            for key, version in _objects(session, record):
                custody.authoritative.set_legal_hold(key, version, on)
        except StorageError as exc:
            raise _unavailable(exc) from exc
        record.legal_hold_reason = reason if on else None
        record.legal_hold_since = now if on else None
        touch(envelope, now)
        session.add(record)
        session.add(envelope)
        data = {"authoritative_copy_id": record.id, "reason": reason}
        if on:
            append_event(
                session, actor=actor, envelope_id=envelope.id, event_type=LEGAL_HOLD_SET, occurred_at=now, data=data
            )
        else:
            append_event(
                session, actor=actor, envelope_id=envelope.id, event_type=LEGAL_HOLD_CLEARED, occurred_at=now, data=data
            )
        if on_commit is not None:
            on_commit(session, envelope)
    return record
