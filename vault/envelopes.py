"""Envelopes: registering one to vault, and reading it back within its organisation only.

The full e-sign lifecycle (sending, signing, voiding) comes later; here an envelope is registered with what
custody needs: its kind, its parties and the secured party that is the assignee of record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from compliance.errors import InvalidInput, NotFound
from compliance.ledger.events import Actor, append_event
from storage.ids import iso, new_id, utcnow
from storage.models import Envelope, VaultedDocument, VaultRecord
from vault.field_limits import check_envelope_fields

KINDS = ("esign", "paper")


@dataclass(frozen=True)
class NewEnvelope:
    kind: str
    title: str
    external_id: str | None = None
    parties: list[dict[str, Any]] = field(default_factory=list)
    secured_party: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def _check_party(party: dict[str, Any], where: str) -> None:
    if not isinstance(party.get("name"), str) or not party["name"].strip():
        raise InvalidInput("Envelope.InvalidParty", f"{where}.name is required", field=f"{where}.name")


def create_envelope(session: Session, actor: Actor, new: NewEnvelope) -> Envelope:
    if new.kind not in KINDS:
        raise InvalidInput("Envelope.InvalidKind", f"kind must be one of {KINDS}", field="kind")
    if not isinstance(new.title, str) or not new.title.strip():
        raise InvalidInput("Envelope.InvalidTitle", "title must not be empty", field="title")
    check_envelope_fields(new.title, new.external_id, new.parties, new.secured_party, new.metadata)
    for i, party in enumerate(new.parties):
        _check_party(party, f"parties[{i}]")
    if new.secured_party is not None:
        _check_party(new.secured_party, "secured_party")
    now = utcnow()
    envelope = Envelope(
        id=new_id("env"),
        org_id=actor.org_id,
        kind=new.kind,
        status="draft" if new.kind == "esign" else "awaiting_upload",
        vault_state="not_vaulted",
        title=new.title,
        external_id=new.external_id,
        parties=new.parties,
        secured_party=new.secured_party,
        meta=new.metadata,
        created_at=now,
        updated_at=now,
    )
    session.add(envelope)
    session.flush()
    append_event(
        session,
        actor=actor,
        envelope_id=envelope.id,
        event_type="envelope.created",
        occurred_at=now,
        data={
            "kind": envelope.kind,
            "title": envelope.title,
            "external_id": envelope.external_id,
            "parties": envelope.parties,
            "secured_party": envelope.secured_party,
        },
    )
    return envelope


def get_envelope(session: Session, org_id: str, envelope_id: str) -> Envelope:
    """Another organisation's envelope is indistinguishable from one that does not exist."""
    envelope = session.get(Envelope, envelope_id)
    if envelope is None or envelope.org_id != org_id:
        raise NotFound("Envelope.NotFound", "no such envelope", envelope_id=envelope_id)
    return envelope


def lock_envelope(session: Session, org_id: str, envelope_id: str) -> Envelope:
    """The envelope, locked for the rest of the caller's transaction: every state change starts here.

    PostgreSQL takes a row lock (``FOR UPDATE``), so a concurrent change of the same envelope waits and then
    sees the committed state; SQLite write sessions already hold the database's one write lock.
    """
    envelope = session.exec(select(Envelope).where(Envelope.id == envelope_id).with_for_update()).first()
    if envelope is None or envelope.org_id != org_id:
        raise NotFound("Envelope.NotFound", "no such envelope", envelope_id=envelope_id)
    return envelope


def vault_record(session: Session, envelope_id: str) -> VaultRecord | None:
    return session.exec(select(VaultRecord).where(VaultRecord.envelope_id == envelope_id)).first()


def vaulted_documents(session: Session, record_id: str) -> list[VaultedDocument]:
    return list(
        session.exec(
            select(VaultedDocument)
            .where(VaultedDocument.record_id == record_id)
            .order_by(col(VaultedDocument.position))
        )
    )


def describe(session: Session, envelope: Envelope) -> dict[str, Any]:
    """The envelope as the API shows it, with its vault record when there is one."""
    view: dict[str, Any] = {
        "id": envelope.id,
        "kind": envelope.kind,
        "status": envelope.status,
        "title": envelope.title,
        "external_id": envelope.external_id,
        "parties": envelope.parties,
        "secured_party": envelope.secured_party,
        "metadata": envelope.meta,
        "revision": envelope.revision,
        "created_at": iso(envelope.created_at),
        "updated_at": iso(envelope.updated_at),
        "vault": {"state": envelope.vault_state},
    }
    record = vault_record(session, envelope.id)
    if record is not None:
        view["vault"].update(
            {
                "authoritative_copy_id": record.id,
                "source": record.source,
                "vaulted_at": iso(record.vaulted_at),
                "retain_until": iso(record.retain_until),
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
                    for doc in vaulted_documents(session, record.id)
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
        )
    return view
