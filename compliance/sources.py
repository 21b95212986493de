"""What the evidence checks read: the database, the authoritative store and the key that signs checkpoints.

The checks take this rather than the service's runtime, so an auditor's or operator's tool that has only
these (and no signing key, no API) can run them.
"""

from __future__ import annotations

from dataclasses import dataclass

from compliance.checkpoints.publisher import origin_for
from compliance.ledger.note import NoteVerifier
from storage.db import Database
from storage.object_store import ObjectStore


@dataclass(frozen=True)
class Sources:
    db: Database
    authoritative: ObjectStore
    copies: ObjectStore
    checkpoint_verifier: NoteVerifier
    origin_prefix: str

    def origin(self, org_id: str) -> str:
        return origin_for(self.origin_prefix, org_id)
