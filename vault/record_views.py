"""How the API shows what stands beside an authoritative copy: its amendments and its paper-in attestations.

Kept apart from the services that write them, so that the envelope's view (``vault.envelopes.describe``) and
those services both read them without importing each other.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from compliance.ledger.personal_data import reveal
from storage.ids import iso
from storage.models import Amendment, PaperInAttestation

AMENDMENT_DOCUMENT_FIELDS = ("id", "filename", "sha256", "size", "pages", "version_id", "signatures")


def amendments_of(session: Session, envelope_id: str) -> list[Amendment]:
    return list(
        session.exec(select(Amendment).where(Amendment.envelope_id == envelope_id).order_by(col(Amendment.position)))
    )


def amendment_objects(session: Session, envelope_id: str) -> list[tuple[str, str]]:
    """(key, version id) of every amendment PDF: retention and legal hold follow the record onto them."""
    return [(d["key"], d["version_id"]) for a in amendments_of(session, envelope_id) for d in a.documents]


def amendment_view(amendment: Amendment) -> dict[str, Any]:
    return {
        "id": amendment.id,
        "position": amendment.position,
        "type": amendment.type,
        "data": amendment.data,
        "documents": [{k: doc.get(k) for k in AMENDMENT_DOCUMENT_FIELDS} for doc in amendment.documents],
        "recorded_at": iso(amendment.recorded_at),
    }


def attestations_view(session: Session, envelope_id: str) -> list[dict[str, Any]]:
    """The envelope's paper-in attestations, oldest first, each with who attested (``state``: erased once erased)."""
    rows = list(
        session.exec(
            select(PaperInAttestation)
            .where(PaperInAttestation.envelope_id == envelope_id)
            .order_by(col(PaperInAttestation.recorded_at), col(PaperInAttestation.id))
        )
    )
    shown = reveal(session, [r.attested_by for r in rows])
    return [
        {
            "id": r.id,
            "original": r.original,
            "at": iso(r.at),
            "location": r.location,
            "attested_by": {**shown[r.attested_by["subject"]].as_json(), "subject": r.attested_by["subject"]},
            "recorded_at": iso(r.recorded_at),
        }
        for r in rows
    ]
