"""What the operator sets on an organisation: its MERS Org ID and its default retention, each change logged.

Both are organisation-level ledger entries (keyless: the operator acts through ``evault org ...``), written in
the transaction that changes the row, which is locked first so two operators changing it at once serialise.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from compliance.errors import Conflict, InvalidInput, NotFound
from compliance.ledger.event_catalogue import ORG_MERS_ORG_ID_SET, ORG_RETENTION_DEFAULT_SET
from compliance.ledger.events import Actor, append_event
from storage.ids import iso, utcnow
from storage.models import Organisation
from vault.registry_ids import check_mers_org_id

MIN_RETENTION_DAYS = 1  # what EVAULT_RETENTION_DAYS allows at least
MAX_RETENTION_DAYS = 36600  # 100 years, as a retention date may be at most (vault/retention.py)


def lock_organisation(session: Session, org_id: str) -> Organisation:
    org = session.exec(select(Organisation).where(Organisation.id == org_id).with_for_update()).first()
    if org is None:
        raise NotFound("Organisation.NotFound", "no such organisation", org_id=org_id)
    return org


def set_mers_org_id(session: Session, org_id: str, mers_org_id: str | None) -> Organisation:
    """Give the organisation its MERS Org ID (None removes it); another organisation's is 409."""
    if mers_org_id is not None:
        check_mers_org_id(mers_org_id)
        holder = session.exec(select(Organisation).where(Organisation.mers_org_id == mers_org_id)).first()
        if holder is not None and holder.id != org_id:
            raise Conflict(
                "Mers.OrgIdTaken", "another organisation of this vault has this MERS Org ID", holder=holder.id
            )
    org = lock_organisation(session, org_id)
    org.mers_org_id = mers_org_id
    session.add(org)
    try:
        session.flush()  # two organisations given the same ID at once: the unique constraint decides
    except IntegrityError:
        raise Conflict("Mers.OrgIdTaken", "another organisation of this vault has this MERS Org ID") from None
    append_event(
        session,
        actor=Actor(org.id),
        event_type=ORG_MERS_ORG_ID_SET,
        occurred_at=utcnow(),
        data={"mers_org_id": mers_org_id},
    )
    return org


def set_retention_default(session: Session, org_id: str, days: int | None) -> Organisation:
    """The retention a vault-in of this organisation gets unless it asks for longer (None: the settings')."""
    if days is not None and not MIN_RETENTION_DAYS <= days <= MAX_RETENTION_DAYS:
        raise InvalidInput(
            "Retention.InvalidDefault",
            f"an organisation's retention is {MIN_RETENTION_DAYS} to {MAX_RETENTION_DAYS} days",
            field="retention_days",
        )
    org = lock_organisation(session, org_id)
    previous = org.retention_days
    org.retention_days = days
    session.add(org)
    append_event(
        session,
        actor=Actor(org.id),
        event_type=ORG_RETENTION_DEFAULT_SET,
        occurred_at=utcnow(),
        data={"retention_days": days, "previous_retention_days": previous},
    )
    return org


def organisation_view(org: Organisation) -> dict[str, object]:
    return {
        "id": org.id,
        "name": org.name,
        "created_at": iso(org.created_at),
        "mers_org_id": org.mers_org_id,
        "retention_days": org.retention_days,
    }
