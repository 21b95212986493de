"""What the evidence checks read: the database, the authoritative store and the key that signs checkpoints.

The checks take this rather than the service's runtime, so an auditor's or operator's tool that has only
these (and no signing key, no API) can run them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from compliance.checkpoints.policy import CheckpointTrust
from compliance.checkpoints.publisher import origin_for
from compliance.ledger.key_history import KeyHistory
from compliance.ledger.log_error import LogError
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
    keys: KeyHistory | None = None  # every generation of the vault's key, once it has been rotated
    # The configured witnesses and TSA roots: what may date a revoked key's checkpoint before its compromise.
    checkpoint_trust: CheckpointTrust = field(default_factory=CheckpointTrust)

    def checkpoint_verifier_for(self, note: str) -> NoteVerifier:
        """The key generation whose signature line ``note`` carries; the current key when none is known."""
        if self.keys is not None:
            try:
                return self.keys.verifier_for_note(note)[0]
            except LogError:
                pass  # verifying against the current key then says why
        return self.checkpoint_verifier

    def origin(self, org_id: str) -> str:
        return origin_for(self.origin_prefix, org_id)
