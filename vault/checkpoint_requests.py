"""Checkpoints signed because a caller asked, not because the cadence said so: who may, and how often.

Every checkpoint is a COMPLIANCE-locked WORM object kept for the retention period, so a read must never mint
one at will. Readers first reuse the latest checkpoint when it is fresh enough (``freshness`` in
``compliance/checkpoints/freshness.py``); only when it is not does a request sign a new one, and then it needs
the scope that writes the vault's WORM bucket (``vault:write``) and a share of the organisation's quota
(``EVAULT_RATE_LIMIT_CHECKPOINTS``, counted in the database so every worker shares it). Refusals have their
own codes: 403 ``Checkpoint.WriteScopeRequired`` and 429 ``Checkpoint.RateLimited``, both with
``Retry-After`` (the scheduled checkpoint, or the quota's window, comes by then).
"""

from __future__ import annotations

from dataclasses import dataclass

from compliance.checkpoints.freshness import covering_checkpoint, freshness
from compliance.checkpoints.publisher import CheckpointService, latest_checkpoint
from compliance.errors import Forbidden, RateLimited
from compliance.ledger.events import log_size
from storage.db import Database
from storage.models import Checkpoint as CheckpointRow
from vault.ratelimit import Policy, consume

WRITE_SCOPE = "vault:write"
SCOPE_REQUIRED = "Checkpoint.WriteScopeRequired"
RATE_LIMITED = "Checkpoint.RateLimited"
POLICY_NAME = "checkpoints"


@dataclass(frozen=True)
class CheckpointRequests:
    """One caller's way to a checkpoint: :meth:`checkpoint_now` signs only when the caller may."""

    service: CheckpointService
    db: Database
    scopes: frozenset[str]
    quota: tuple[int, int]  # checkpoints per window (seconds), per organisation
    scheduled_every: int  # seconds between scheduled checkpoints: when a refused reader may try again

    def checkpoint_now(self, org_id: str) -> CheckpointRow:
        """Sign a checkpoint now for a caller who holds ``vault:write`` and whose organisation has quota."""
        if WRITE_SCOPE not in self.scopes:
            raise Forbidden(
                SCOPE_REQUIRED,
                f"events are pending and signing a checkpoint on request needs the scope {WRITE_SCOPE}; "
                f"the scheduled checkpoint covers them within {self.scheduled_every} s",
                required_scope=WRITE_SCOPE,
                retry_after_seconds=self.scheduled_every,
            )
        usage = consume(
            self.db, org_id, Policy(POLICY_NAME, *self.quota, RATE_LIMITED, "EVAULT_RATE_LIMIT_CHECKPOINTS")
        )
        if not usage.admitted:
            quota, window = self.quota
            raise RateLimited(
                RATE_LIMITED,
                f"this organisation asked for {quota} checkpoints in {window} s; retry after {usage.reset} s",
                setting="EVAULT_RATE_LIMIT_CHECKPOINTS",
                retry_after_seconds=min(usage.reset, self.scheduled_every),
            )
        return self.service.checkpoint_now(org_id)

    def covering(self, org_id: str, covers: int | None = None) -> CheckpointRow:
        """The latest checkpoint if it is fresh for ``covers`` entries (default: the whole log); else a new one,
        signed only if this caller may (see :meth:`checkpoint_now`)."""
        if covers is None:
            with self.db.read_session() as session:
                covers = log_size(session, org_id)
        return covering_checkpoint(self.db, self, org_id, covers)

    def latest_or_new(self, org_id: str) -> CheckpointRow:
        """For ``GET /log/checkpoint``: a new checkpoint if entries are pending and the caller may sign one; else
        the latest, stale or not (its size says how far it covers). Refused only when none exists yet."""
        with self.db.read_session() as session:
            latest = latest_checkpoint(session, org_id)
            fresh = freshness(session, org_id, latest, log_size(session, org_id))
        if latest is not None and (fresh or WRITE_SCOPE not in self.scopes):
            return latest
        try:
            return self.checkpoint_now(org_id)
        except RateLimited:
            if latest is None:
                raise
            return latest
