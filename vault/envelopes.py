"""Envelopes: registering one to vault, and reading it back within the organisations that hold it only (its
controller and its custodian; both are its own organisation until a transfer moves them, docs/transfers.md).

An envelope is registered with what custody needs: its kind, its parties, the secured party that is the
assignee of record, an optional ``external_id`` (unique per organisation) and an optional ``expires_at``.
Its states and their transitions live in :mod:`vault.lifecycle`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, or_, select

from compliance.errors import Conflict, Forbidden, InvalidInput, NotFound
from compliance.ledger.event_catalogue import ENVELOPE_CREATED
from compliance.ledger.events import Actor, append_event
from compliance.ledger.personal_data import commit_parties, reveal
from storage.db import Database
from storage.ids import as_utc, iso, new_id, utcnow
from storage.models import Ceremony, Envelope, StagedDocument, VaultedDocument, VaultRecord
from vault.ceremony.roster import add_recipients, check_recipients, roster_view
from vault.custody import OnCommit
from vault.field_limits import check_envelope_fields
from vault.lifecycle import initial_status
from vault.min_registry import already_used, min_of, register_min, taken
from vault.record_views import amendment_view, amendments_of, attestations_view
from vault.registry_ids import check_min
from vault.secured_party import check_identity

KINDS = ("esign", "paper")
ENVELOPE_ID = re.compile(r"env_[a-z0-9]{20}")


@dataclass(frozen=True)
class NewEnvelope:
    kind: str
    title: str
    external_id: str | None = None
    parties: list[dict[str, Any]] = field(default_factory=list)
    secured_party: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    expires_at: datetime | None = None
    min: str | None = None  # MERS Mortgage Identification Number (vault/min_registry.py)
    recipients: list[dict[str, Any]] = field(default_factory=list)  # e-sign only: the signing roster


def _check_new(new: NewEnvelope) -> None:
    if new.kind not in KINDS:
        raise InvalidInput("Envelope.InvalidKind", f"kind must be one of {KINDS}", field="kind")
    if not isinstance(new.title, str) or not new.title.strip():
        raise InvalidInput("Envelope.InvalidTitle", "title must not be empty", field="title")
    if new.external_id is not None and (not isinstance(new.external_id, str) or not new.external_id.strip()):
        raise InvalidInput("Envelope.InvalidExternalId", "external_id must not be empty", field="external_id")
    check_envelope_fields(new.title, new.external_id, new.parties, new.secured_party, new.metadata)
    check_recipients(new.kind, new.recipients)
    if new.expires_at is not None and (new.expires_at.tzinfo is None or as_utc(new.expires_at) <= utcnow()):
        raise InvalidInput(
            "Envelope.InvalidExpiry", "expires_at must be a future time with a UTC offset", field="expires_at"
        )
    if new.min is not None:
        check_min(new.min)


def _by_external_id(session: Session, org_id: str, external_id: str) -> Envelope | None:
    return session.exec(select(Envelope).where(Envelope.org_id == org_id, Envelope.external_id == external_id)).first()


def _duplicate(existing: Envelope) -> Conflict:
    return Conflict(
        "Envelope.DuplicateExternalId",
        "an envelope with this external_id already exists in your organisation",
        external_id=existing.external_id,
        envelope_id=existing.id,
    )


def register_envelope(db: Database, actor: Actor, new: NewEnvelope, on_commit: OnCommit | None = None) -> Envelope:
    """Create the envelope and its ``envelope.created`` event in one transaction; a duplicate external id is 409
    with the existing envelope's id, also when two creates race (the partial unique index decides)."""
    _check_new(new)
    try:
        with db.session() as session:
            check_identity(session, new.secured_party)
            if new.external_id is not None and (found := _by_external_id(session, actor.org_id, new.external_id)):
                raise _duplicate(found)
            envelope = create_envelope(session, actor, new)
            if on_commit is not None:
                on_commit(session, envelope)
    except IntegrityError:
        with db.read_session() as session:
            found = _by_external_id(session, actor.org_id, new.external_id or "")
            min_taken = new.min is not None and taken(session, new.min)
        if found is not None:
            raise _duplicate(found) from None
        if min_taken:
            raise already_used(str(new.min)) from None
        raise
    return envelope


def create_envelope(session: Session, actor: Actor, new: NewEnvelope) -> Envelope:
    """Insert the envelope and its event in the caller's transaction (checked by :func:`register_envelope`)."""
    now = utcnow()
    envelope = Envelope(
        id=new_id("env"),
        org_id=actor.org_id,
        kind=new.kind,
        status=initial_status(new.kind),
        vault_state="not_vaulted",
        title=new.title,
        external_id=new.external_id,
        parties=[],
        secured_party=new.secured_party,
        meta=new.metadata,
        created_at=now,
        updated_at=now,
        expires_at=new.expires_at,
    )
    session.add(envelope)
    session.flush()
    if new.min is not None:
        register_min(session, actor.org_id, envelope.id, new.min, now)
    # The log and the row keep commitments; the people themselves live only in data_subject, where they can be
    # erased.
    envelope.parties = commit_parties(session, actor.org_id, envelope.id, new.parties, now)
    session.add(envelope)
    if envelope.kind == "esign":
        session.add(Ceremony(envelope_id=envelope.id, org_id=envelope.org_id))
        add_recipients(session, envelope, check_recipients(new.kind, new.recipients), now)
    append_event(
        session,
        actor=actor,
        envelope_id=envelope.id,
        event_type=ENVELOPE_CREATED,
        occurred_at=now,
        data={
            "kind": envelope.kind,
            "title": envelope.title,
            "external_id": envelope.external_id,
            "parties": envelope.parties,
            "secured_party": envelope.secured_party,
            **({"expires_at": iso(envelope.expires_at)} if envelope.expires_at else {}),
            **({"min": new.min} if new.min is not None else {}),
        },
    )
    return envelope


def get_envelope(session: Session, org_id: str, envelope_id: str) -> Envelope:
    """Another organisation's envelope is indistinguishable from one that does not exist."""
    envelope = session.get(Envelope, envelope_id) if ENVELOPE_ID.fullmatch(envelope_id) else None
    if envelope is None or not envelope.held_by(org_id):
        raise NotFound("Envelope.NotFound", "no such envelope", envelope_id=envelope_id)
    return envelope


# Built once: every state change runs it, and building a statement costs more than SQLite takes to run it.
_LOCK_ENVELOPE = select(Envelope).where(Envelope.id == bindparam("envelope_id")).with_for_update()


def lock_envelope(session: Session, org_id: str, envelope_id: str) -> Envelope:
    """The envelope, locked for the rest of the caller's transaction: every state change starts here.

    PostgreSQL takes a row lock (``FOR UPDATE``), so a concurrent change of the same envelope waits and then
    sees the committed state; SQLite write sessions already hold the database's one write lock.
    """
    if not ENVELOPE_ID.fullmatch(envelope_id):
        raise NotFound("Envelope.NotFound", "no such envelope", envelope_id=envelope_id)
    envelope = session.exec(_LOCK_ENVELOPE, params={"envelope_id": envelope_id}).first()
    if envelope is None or not envelope.held_by(org_id):
        raise NotFound("Envelope.NotFound", "no such envelope", envelope_id=envelope_id)
    return envelope


def held_by(org_id: str) -> Any:
    """The SQL condition for :meth:`Envelope.held_by`: the envelopes an organisation controls or keeps."""
    return or_(
        func.coalesce(Envelope.controller_org_id, Envelope.org_id) == org_id,
        func.coalesce(Envelope.custodian_org_id, Envelope.org_id) == org_id,
    )


def require_control(envelope: Envelope, org_id: str) -> None:
    """Releasing or transferring control is for the organisation in control; its custodian may not."""
    if envelope.controller != org_id:
        raise Forbidden(
            "Transfer.NotController",
            "only the organisation in control may release or transfer this record; yours keeps it as custodian",
            envelope_id=envelope.id,
        )


def vault_record(session: Session, envelope_id: str) -> VaultRecord | None:
    return session.exec(select(VaultRecord).where(VaultRecord.envelope_id == envelope_id)).first()


def staged_documents(session: Session, envelope_id: str) -> list[StagedDocument]:
    """Uploads waiting for vault-in, oldest first (the order vault-in will vault them in)."""
    return list(
        session.exec(
            select(StagedDocument)
            .where(StagedDocument.envelope_id == envelope_id)
            .order_by(col(StagedDocument.staged_at), col(StagedDocument.id))
        )
    )


def vaulted_documents(session: Session, record_id: str) -> list[VaultedDocument]:
    return list(
        session.exec(
            select(VaultedDocument)
            .where(VaultedDocument.record_id == record_id)
            .order_by(col(VaultedDocument.position))
        )
    )


def summary(envelope: Envelope) -> dict[str, Any]:
    """What a list shows of an envelope: its own row, no documents."""
    return {
        "id": envelope.id,
        "kind": envelope.kind,
        "status": envelope.status,
        "vault_state": envelope.vault_state,
        "title": envelope.title,
        "external_id": envelope.external_id,
        "revision": envelope.revision,
        "created_at": iso(envelope.created_at),
        "updated_at": iso(envelope.updated_at),
        "expires_at": iso(envelope.expires_at) if envelope.expires_at else None,
    }


def parties_view(session: Session, parties: list[Any]) -> list[dict[str, Any]]:
    """Each party's values with its subject id and ``state`` (``shown``; ``erased`` once the person was erased)."""
    shown = reveal(session, parties)
    view = []
    for party in parties:
        subject = party.get("subject") if isinstance(party, dict) else None
        # An envelope registered before parties were committed to keeps its values in the row, as they were.
        view.append(party if subject is None else {**shown[subject].as_json(), "subject": subject})
    return view


def describe(
    session: Session, envelope: Envelope, written: tuple[VaultRecord, list[VaultedDocument]] | None = None
) -> dict[str, Any]:
    """The envelope as the API shows it, with its staged uploads and, once vaulted, its vault record.

    ``written``: the record and documents the caller's transaction has just written (a vault-in's answer). They
    are shown as they are, not read back, and so are no amendments and no paper-in attestations: both need the
    record before them, under the envelope's lock, so a record written in this transaction has none."""
    fresh = written is not None
    view: dict[str, Any] = {
        **summary(envelope),
        "min": min_of(session, envelope.id),
        "parties": parties_view(session, envelope.parties),
        "secured_party": envelope.secured_party,
        "metadata": envelope.meta,
        "staged_documents": [
            {
                "id": doc.id,
                "filename": doc.filename,
                "sha256": doc.sha256,
                "size": doc.size,
                "staged_at": iso(doc.staged_at),
                "expires_at": iso(doc.expires_at),
            }
            for doc in (staged_documents(session, envelope.id) if envelope.status == "awaiting_upload" else [])
        ],
        "vault": {"state": envelope.vault_state},
        "amendments": [] if fresh else [amendment_view(a) for a in amendments_of(session, envelope.id)],
        "paper_in_attestations": [] if fresh else attestations_view(session, envelope.id),
    }
    if envelope.kind == "esign":
        view["recipients"] = roster_view(session, envelope.id)
        ceremony = session.get(Ceremony, envelope.id)
        view["document"] = (
            None
            if ceremony is None or ceremony.document_id is None
            else {
                "id": ceremony.document_id,
                "filename": ceremony.filename,
                "sha256": ceremony.sha256,
                "size": ceremony.size,
                "pages": len(ceremony.pages or []),
            }
        )
    if written is not None:
        view["vault"].update(record_view(*written))
    elif (record := vault_record(session, envelope.id)) is not None:
        view["vault"].update(record_view(record, vaulted_documents(session, record.id)))
    return view


def record_view(record: VaultRecord, documents: list[VaultedDocument]) -> dict[str, Any]:
    """An envelope's vault record as the API shows it under ``vault``."""
    return {
        "authoritative_copy_id": record.id,
        "source": record.source,
        "vaulted_at": iso(record.vaulted_at),
        "retain_until": iso(record.retain_until),
        "legal_hold": None
        if record.legal_hold_reason is None or record.legal_hold_since is None
        else {"reason": record.legal_hold_reason, "since": iso(record.legal_hold_since)},
        "disposed_at": iso(record.disposed_at) if record.disposed_at else None,
        "documents": [
            {
                "id": doc.id,
                "filename": doc.filename,
                "sha256": doc.sha256,
                "size": doc.size,
                "pages": doc.page_count,
                "version_id": doc.s3_version_id,
                "signatures": doc.signatures,
            }
            for doc in documents
        ],
        "released": None
        if record.released_at is None
        else {
            "at": iso(record.released_at),
            "by": record.released_by,
            "reason": record.release_reason,
            "details": record.release_details,
        },
    }
