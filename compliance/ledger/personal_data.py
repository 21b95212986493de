"""Personal data kept out of the permanent log: the log holds a commitment to each person's values, never them.

The log is locked for years and handed to every auditor, so a borrower's name or email written there could never
be erased. Each party of an envelope becomes a *data subject* with a random 32-byte key of its own; the log entry
holds ``{"subject": "sub_...", "commitment": hex(HMAC-SHA256(key, RFC 8785 of the party's values))}`` and the
database holds the key and the values. Whoever is shown the values and the key can check them against the log;
without the key the commitment reveals nothing, not even whether two envelopes name the same person (keys are
per subject, never per organisation). Erasure deletes the values and the key together: the commitment stays,
every chain and proof still verifies, and nothing can open it again.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import rfc8785
from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from storage.ids import new_id
from storage.models import DataSubject

SUBJECT_ID = re.compile(r"sub_[a-z0-9]{20}")


def commitment(key: bytes, values: dict[str, Any]) -> str:
    """Hex HMAC-SHA256 under the subject's key of the RFC 8785 encoding of its values."""
    return hmac.new(key, rfc8785.dumps(values), "sha256").hexdigest()


def commit_parties(
    session: Session, org_id: str, envelope_id: str, parties: list[dict[str, Any]], now: datetime
) -> list[dict[str, str]]:
    """One data subject per party, added to the caller's transaction; what the log and the envelope row keep."""
    references = []
    for party in parties:
        key = secrets.token_bytes(32)
        subject = DataSubject(
            id=new_id("sub"), org_id=org_id, envelope_id=envelope_id, key=key, clear=dict(party), created_at=now
        )
        session.add(subject)
        references.append({"subject": subject.id, "commitment": commitment(key, party)})
    return references


@dataclass(frozen=True)
class Revealed:
    """What stands behind one committed reference: the values (``shown``), nothing (``erased``), or values that
    do not open the commitment (``mismatch``: an edited row is never presented as what was committed)."""

    state: Literal["shown", "erased", "mismatch"]
    values: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {**(self.values or {}), "state": self.state}


# Built once: every envelope's answer reveals its parties, and building a statement costs more than running it.
_SUBJECTS = select(DataSubject).where(col(DataSubject.id).in_(bindparam("ids", expanding=True)))


def reveal(session: Session, references: list[Any]) -> dict[str, Revealed]:
    """What stands behind each committed reference, by subject id."""
    wanted = {
        r["subject"]: r.get("commitment")
        for r in references
        if isinstance(r, dict) and isinstance(r.get("subject"), str)
    }
    if not wanted:
        return {}
    found = {row.id: row for row in session.exec(_SUBJECTS, params={"ids": list(wanted)})}
    shown: dict[str, Revealed] = {}
    for subject_id, committed in wanted.items():
        row = found.get(subject_id)
        if row is None or row.key is None or row.clear is None:
            shown[subject_id] = Revealed("erased")
        elif isinstance(committed, str) and hmac.compare_digest(commitment(row.key, row.clear), committed):
            shown[subject_id] = Revealed("shown", dict(row.clear))
        else:
            shown[subject_id] = Revealed("mismatch")
    return shown
