"""Who the secured party (the assignee of record) is, beyond its name.

The name stays a label. Behind it a party may name an organisation of this vault (``"org_id": "org_..."``,
which must exist) or an external party by its registered identifier (``"mers_org_id": "1234567"``), not both:
one identity, so that a later registry adapter or transfer knows whom control belongs to. A party with a name
only is still accepted, as before. The party is otherwise the free object ``vault.field_limits.check_party``
bounds, and is recorded in ``envelope.created`` and ``vault.vaulted_in`` as it is.
"""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import Session

from compliance.errors import InvalidInput
from storage.models import Organisation
from vault.registry_ids import check_mers_org_id

ORG_ID = re.compile(r"org_[a-z0-9]{20}")
IDENTITIES = ("org_id", "mers_org_id")


def check_identity(session: Session, party: Any, field: str = "secured_party") -> None:
    """A party's identity is one of :data:`IDENTITIES` or none; an ``org_id`` names an organisation here."""
    if not isinstance(party, dict):
        return
    named = [key for key in IDENTITIES if key in party]
    if len(named) > 1:
        raise InvalidInput(
            "SecuredParty.AmbiguousIdentity",
            f"a secured party is identified by one of {IDENTITIES}, not several",
            field=field,
        )
    if "mers_org_id" in party:
        check_mers_org_id(party["mers_org_id"], f"{field}.mers_org_id")
    if "org_id" in party:
        org_id = party["org_id"]
        if not isinstance(org_id, str) or not ORG_ID.fullmatch(org_id) or session.get(Organisation, org_id) is None:
            raise InvalidInput(
                "SecuredParty.UnknownOrganisation",
                "secured_party.org_id names no organisation of this vault",
                field=f"{field}.org_id",
            )
