"""Whether the latest checkpoint is fresh enough for a read, so that reads reuse it instead of signing anew.

One rule for every reader (``?checkpoint=now``, ``GET /log/checkpoint``, proof bundles, certificates): the
latest checkpoint will do when it covers the first ``covering`` entries of the log and ends with a head-map
commit (a v2 bundle needs that commit as the checkpoint's last entry). Only when it is not fresh may a new
checkpoint be signed on demand, and the service decides who may ask for that and how often.
"""

from __future__ import annotations

from typing import Protocol

from sqlmodel import Session

from compliance.headmap.sql_store import map_root_ending
from compliance.ledger.events import envelope_events
from storage.models import Checkpoint as CheckpointRow


def freshness(session: Session, org_id: str, latest: CheckpointRow | None, covering: int) -> bool:
    """True when ``latest`` signs at least ``covering`` entries and its last entry is a head-map commit."""
    return (
        latest is not None
        and latest.size >= covering
        and (latest.size == 0 or map_root_ending(session, org_id, latest.size) is not None)
    )


def envelope_coverage(session: Session, envelope_id: str) -> int:
    """How many entries a checkpoint must sign to cover every event of the envelope (0 for none)."""
    events = envelope_events(session, envelope_id)
    return events[-1].leaf_index + 1 if events else 0


class SignsOnDemand(Protocol):
    """Whatever signs a checkpoint on a reader's request: the service's gate (scope, per-organisation rate)
    in front of :meth:`CheckpointService.checkpoint_now`, or the service itself for the operator's tools."""

    def checkpoint_now(self, org_id: str) -> CheckpointRow: ...
