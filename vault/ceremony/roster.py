"""The signing roster: each recipient's name, email, role, order and fields, checked, and how the API shows them.

A recipient's name and email are personal data: they live in a data subject (as an envelope's parties do) and
the log only ever holds the commitment to them. Fields are rectangles in PDF points from the page's bottom-left;
that each falls on a page of the document is checked when the document is staged and again at send.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from compliance.errors import InvalidInput
from compliance.ledger.personal_data import commit_parties, commitment
from storage.ids import iso, new_id
from storage.models import DataSubject, Envelope, Recipient
from vault.field_limits import check_line

ROLES = ("signer", "viewer")
FIELD_TYPES = ("signature", "initials", "date", "text")
MAX_RECIPIENTS = 20
MAX_FIELDS = 50
MAX_ORDER = 1000
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_RECIPIENT_KEYS = {"name", "email", "role", "order", "fields"}
_FIELD_KEYS = {"type", "page", "x", "y", "width", "height"}


def _bad(field: str, message: str) -> InvalidInput:
    return InvalidInput("Recipient.Invalid", message, field=field)


def _number(value: Any, field: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or abs(value) > 1e6:
        raise _bad(field, f"{field} must be a finite number of PDF points")
    if value < 0 or (positive and value == 0):
        raise _bad(field, f"{field} must be {'positive' if positive else 'zero or more'}")
    return float(value)


def _check_field(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict) or not set(item) <= _FIELD_KEYS or not {"type", "page"} <= set(item):
        raise _bad(where, f"{where} must be an object with type, page, x, y, width and height")
    if item["type"] not in FIELD_TYPES:
        raise _bad(f"{where}.type", f"{where}.type must be one of {FIELD_TYPES}")
    page = item["page"]
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise _bad(f"{where}.page", f"{where}.page must be a page number from 1")
    box = {k: _number(item.get(k), f"{where}.{k}", positive=k in ("width", "height")) for k in ("x", "y")}
    box |= {k: _number(item.get(k), f"{where}.{k}", positive=True) for k in ("width", "height")}
    return {"type": item["type"], "page": page, **box}


def check_recipients(kind: str, recipients: Any) -> list[dict[str, Any]]:
    """The roster as stored, or 400 ``Recipient.Invalid`` naming the field; only an e-sign envelope has one."""
    if recipients in (None, []):
        return []
    if kind != "esign":
        raise _bad("recipients", "only an esign envelope has recipients")
    if not isinstance(recipients, list) or len(recipients) > MAX_RECIPIENTS:
        raise _bad("recipients", f"recipients must be a list of at most {MAX_RECIPIENTS}")
    checked, emails = [], set()
    for i, item in enumerate(recipients):
        where = f"recipients[{i}]"
        if not isinstance(item, dict) or not set(item) <= _RECIPIENT_KEYS:
            raise _bad(where, f"{where} takes name, email, role, order and fields")
        check_line(item.get("name"), f"{where}.name", 200, required=True)
        check_line(item.get("email"), f"{where}.email", 254, required=True)
        name, email = item["name"].strip(), item["email"].strip()
        if not name:
            raise _bad(f"{where}.name", f"{where}.name must not be empty")
        if not _EMAIL.fullmatch(email) or email.lower() in emails:
            raise _bad(f"{where}.email", f"{where}.email must be an email address, once per envelope")
        emails.add(email.lower())
        role = item.get("role", "signer")
        if role not in ROLES:
            raise _bad(f"{where}.role", f"{where}.role must be one of {ROLES}")
        order = item.get("order", 1)
        if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= MAX_ORDER:
            raise _bad(f"{where}.order", f"{where}.order must be a whole number from 1 to {MAX_ORDER}")
        fields = item.get("fields", [])
        if not isinstance(fields, list) or len(fields) > MAX_FIELDS:
            raise _bad(f"{where}.fields", f"{where}.fields must be a list of at most {MAX_FIELDS}")
        if role == "viewer" and fields:
            raise _bad(f"{where}.fields", "a viewer has no fields to fill")
        checked.append(
            {
                "name": name,
                "email": email,
                "role": role,
                "order": order,
                "fields": [_check_field(f, f"{where}.fields[{j}]") for j, f in enumerate(fields)],
            }
        )
    return checked


def add_recipients(
    session: Session, envelope: Envelope, recipients: list[dict[str, Any]], now: datetime
) -> list[Recipient]:
    """The roster's rows, in the caller's transaction; each person a data subject of the envelope."""
    subjects = commit_parties(
        session, envelope.org_id, envelope.id, [{"name": r["name"], "email": r["email"]} for r in recipients], now
    )
    rows = [
        Recipient(
            id=new_id("rcp"),
            envelope_id=envelope.id,
            org_id=envelope.org_id,
            subject_id=subject["subject"],
            role=r["role"],
            signing_order=r["order"],
            position=position,
            fields=r["fields"],
            status="pending",
            link_nonce=secrets.token_hex(16),
        )
        for position, (r, subject) in enumerate(zip(recipients, subjects, strict=True))
    ]
    session.add_all(rows)
    return rows


def roster(session: Session, envelope_id: str) -> list[Recipient]:
    """The recipients in signing order (then as the roster listed them)."""
    return list(
        session.exec(
            select(Recipient)
            .where(Recipient.envelope_id == envelope_id)
            .order_by(col(Recipient.signing_order), col(Recipient.position))
        )
    )


def people(session: Session, rows: list[Recipient]) -> dict[str, dict[str, Any]]:
    """Each recipient's name and email by recipient id (empty values once the person was erased)."""
    ids = [r.subject_id for r in rows]
    found = {s.id: s for s in session.exec(select(DataSubject).where(col(DataSubject.id).in_(ids)))} if ids else {}
    return {r.id: dict(found[r.subject_id].clear or {}) if r.subject_id in found else {} for r in rows}


def commitments(session: Session, rows: list[Recipient]) -> dict[str, dict[str, str]]:
    """Each recipient's ``{subject, commitment}`` as the log holds it, by recipient id (recomputed with the
    subject's key; an erased person keeps no key, so their entry can name only the subject)."""
    ids = [r.subject_id for r in rows]
    found = {s.id: s for s in session.exec(select(DataSubject).where(col(DataSubject.id).in_(ids)))} if ids else {}
    out = {}
    for r in rows:
        subject = found.get(r.subject_id)
        if subject is not None and subject.key is not None and subject.clear is not None:
            out[r.id] = {"subject": r.subject_id, "commitment": commitment(subject.key, subject.clear)}
    return out


def check_fields_on_pages(rows: list[Recipient], pages: list[list[float]]) -> None:
    """Every field lies within a page of the document (400 ``Recipient.FieldOffPage`` naming it otherwise)."""
    for i, row in enumerate(rows):
        for j, f in enumerate(row.fields):
            where = f"recipients[{i}].fields[{j}]"
            if f["page"] > len(pages):
                raise InvalidInput(
                    "Recipient.FieldOffPage",
                    f"{where} is on page {f['page']}; the document has {len(pages)}",
                    field=where,
                    pages=len(pages),
                )
            width, height = pages[f["page"] - 1]
            if f["x"] + f["width"] > width + 0.01 or f["y"] + f["height"] > height + 0.01:
                raise InvalidInput(
                    "Recipient.FieldOffPage",
                    f"{where} reaches beyond its page ({width} x {height} points)",
                    field=where,
                    page_size=[width, height],
                )


def recipient_view(row: Recipient, person: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": person.get("name"),
        "email": person.get("email"),
        "role": row.role,
        "order": row.signing_order,
        "status": row.status,
        "fields": row.fields,
        "signed_at": iso(row.signed_at) if row.signed_at else None,
        "declined_at": iso(row.declined_at) if row.declined_at else None,
    }


def roster_view(session: Session, envelope_id: str) -> list[dict[str, Any]]:
    rows = roster(session, envelope_id)
    shown = people(session, rows)
    return [recipient_view(row, shown[row.id]) for row in rows]
