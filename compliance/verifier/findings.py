"""A finding: a code from the registry, a message, and the subject it names (organisation, envelope, object).

Its fingerprint is a hash of the code and the subject only, never of the message or of volatile details, so
the same fault found on two nights (or twice in one resumed run) is recognised as one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import rfc8785

from compliance.finding_codes import known

# Details that identify what is faulty (the rest describes how).
SUBJECT_FIELDS = (
    "org_id",
    "envelope_id",
    "document_id",
    "copy_id",
    "key_id",
    "bucket",
    "key",
    "version_id",
    "size",
    "leaf_index",
    "claim_id",
)


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        known(self.code)

    @property
    def subject(self) -> dict[str, Any]:
        return {k: self.details[k] for k in SUBJECT_FIELDS if self.details.get(k) is not None}

    @property
    def org_id(self) -> str | None:
        value = self.details.get("org_id")
        return value if isinstance(value, str) else None

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(rfc8785.dumps({"code": self.code, "subject": self.subject})).hexdigest()

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}
