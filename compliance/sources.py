"""What the evidence checks read: the database, the authoritative store and the key that signs checkpoints.

The checks take this rather than the service's runtime, so an auditor's or operator's tool that has only
these (and no signing key, no API) can run them. ``deadline`` says until when: the service gives each request's
checks one (:class:`Deadline`), and the checks look at it between steps, so work whose answer nobody waits for
any more stops within one step (one storage request, one query) instead of running to its end.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from compliance.checkpoints.policy import CheckpointTrust
from compliance.checkpoints.publisher import origin_for
from compliance.errors import Unavailable
from compliance.ledger.key_history import KeyHistory
from compliance.ledger.log_error import LogError
from compliance.ledger.note import NoteVerifier
from storage.db import Database
from storage.object_store import ObjectStore


class Deadline:
    """A time after which, or a cancellation after which, evidence work stops (``seconds`` None: never)."""

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = seconds
        self._at = None if seconds is None else time.monotonic() + seconds
        self._cancelled = threading.Event()

    def remaining(self) -> float | None:
        return None if self._at is None else max(0.0, self._at - time.monotonic())

    def cancel(self) -> None:
        """Nobody waits for the answer any more (the client left, the deadline passed, the service stops)."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check(self) -> None:
        """Raise 503 ``Evidence.Timeout`` once the deadline has passed or the work was cancelled."""
        if self._cancelled.is_set() or (self._at is not None and time.monotonic() >= self._at):
            self._cancelled.set()
            raise Unavailable(
                "Evidence.Timeout",
                f"the evidence was not ready within {self.seconds or 0:.0f} s (EVAULT_EVIDENCE_DEADLINE_SECONDS)",
                setting="EVAULT_EVIDENCE_DEADLINE_SECONDS",
                retry_after_seconds=max(1, round(self.seconds or 1)),
            )


@dataclass(frozen=True)
class Sources:
    db: Database
    authoritative: ObjectStore
    copies: ObjectStore
    checkpoint_verifier: NoteVerifier
    origin_prefix: str
    deadline: Deadline = field(default_factory=Deadline, compare=False)
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
