"""The vault's MIN registry: a MIN names one envelope of this vault, for good.

A MIN is taken at envelope creation, in the creation's transaction, and its ``mers_min`` row is never updated
or deleted (the database refuses both), so a MIN stays taken after its envelope is voided, released or disposed
of. Its first seven digits must be the creating organisation's MERS Org ID (``evault org set-mers-id``): the
organisation registering the MIN is the one that numbers it. Two creations racing for one MIN meet the
primary key; the loser is 409 ``Min.AlreadyUsed`` like any later attempt.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam
from sqlmodel import Session, select

from compliance.errors import Conflict, InvalidInput
from storage.models import MersMin, Organisation


def already_used(min_value: str) -> Conflict:
    return Conflict(
        "Min.AlreadyUsed", "this MIN is registered in this vault already; a MIN is never reused", min=min_value
    )


def taken(session: Session, min_value: str) -> bool:
    return session.get(MersMin, min_value) is not None


def register_min(session: Session, org_id: str, envelope_id: str, min_value: str, now: datetime) -> None:
    """Take the (already well-formed) MIN for the envelope, in the caller's transaction."""
    org = session.get(Organisation, org_id)
    if org is None or org.mers_org_id is None:
        raise Conflict(
            "Min.NoOrgId",
            "your organisation has no MERS Org ID: the operator sets it (evault org set-mers-id) before MINs",
        )
    if min_value[:7] != org.mers_org_id:
        raise InvalidInput(
            "Min.OrgIdMismatch",
            "a MIN starts with the registering organisation's MERS Org ID",
            field="min",
            mers_org_id=org.mers_org_id,
        )
    if taken(session, min_value):
        raise already_used(min_value)
    session.add(MersMin(min=min_value, org_id=org_id, envelope_id=envelope_id, registered_at=now))


_MIN_OF = select(MersMin.min).where(MersMin.envelope_id == bindparam("envelope_id"))  # every envelope view runs it


def min_of(session: Session, envelope_id: str) -> str | None:
    found: str | None = session.exec(_MIN_OF, params={"envelope_id": envelope_id}).first()
    return found
