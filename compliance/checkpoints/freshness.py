"""The one rule for "is the latest checkpoint good enough to answer with": every caller asks here.

A checkpoint is fresh for a question about the first ``covers`` entries of a log when it covers at least them
and its last entry is a head-map commit (so that it proves the present, not only the past). Anything less
and a checkpoint is signed now. The log API, proof bundles, certificates and the compliance check all use
this, so that a bundle and a certificate taken at the same moment rest on the same checkpoint.
"""

from __future__ import annotations

from compliance.checkpoints.publisher import CheckpointService, latest_checkpoint
from compliance.headmap.sql_store import map_root_ending
from compliance.ledger.events import envelope_events
from storage.db import Database
from storage.models import Checkpoint as CheckpointRow


def covering_checkpoint(db: Database, checkpoints: CheckpointService, org_id: str, covers: int) -> CheckpointRow:
    """The latest checkpoint when it covers ``covers`` entries and ends with a map commit; else one signed now."""
    with db.read_session() as session:
        latest = latest_checkpoint(session, org_id)
        fresh = (
            latest is not None and latest.size >= covers and map_root_ending(session, org_id, latest.size) is not None
        )
    if latest is not None and fresh:
        return latest
    return checkpoints.checkpoint_now(org_id)


def checkpoint_for_envelope(
    db: Database, checkpoints: CheckpointService, org_id: str, envelope_id: str
) -> CheckpointRow:
    """A fresh checkpoint covering every event of one envelope (the question a bundle or certificate asks)."""
    with db.read_session() as session:
        events = envelope_events(session, envelope_id)
    return covering_checkpoint(db, checkpoints, org_id, events[-1].leaf_index + 1 if events else 0)
