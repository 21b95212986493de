"""The one rule for "is the latest checkpoint good enough to answer with": every caller asks here.

A checkpoint is fresh for a question about the first ``covers`` entries of a log when it covers at least them
and its last entry is a head-map commit (so that it proves the present, not only the past). The log API, proof
bundles, certificates and the compliance check all use this, so that a bundle and a certificate taken at the
same moment rest on the same checkpoint, and so that reads reuse it instead of signing anew: every checkpoint
is a locked WORM object kept for the retention period. Only when it is not fresh is one signed, by whatever
the caller passes as ``checkpoints``: the service's gate for API callers (scope and per-organisation quota,
``vault/checkpoint_requests.py``), or the checkpoint service itself for the operator's tools.
"""

from __future__ import annotations

from typing import Protocol

from sqlmodel import Session

from compliance.checkpoints.publisher import latest_checkpoint
from compliance.headmap.sql_store import map_root_ending
from compliance.ledger.events import envelope_events
from storage.db import Database
from storage.models import Checkpoint as CheckpointRow


class SignsOnDemand(Protocol):
    """Signs a checkpoint of the log's current head now (``CheckpointService`` or a gate in front of it)."""

    def checkpoint_now(self, org_id: str) -> CheckpointRow: ...


def freshness(session: Session, org_id: str, latest: CheckpointRow | None, covers: int) -> bool:
    """True when ``latest`` signs at least ``covers`` entries and its last entry is a head-map commit."""
    return latest is not None and latest.size >= covers and map_root_ending(session, org_id, latest.size) is not None


def covering_checkpoint(db: Database, checkpoints: SignsOnDemand, org_id: str, covers: int) -> CheckpointRow:
    """The latest checkpoint when it is fresh for ``covers`` entries; else one signed now."""
    with db.read_session() as session:
        latest = latest_checkpoint(session, org_id)
        fresh = freshness(session, org_id, latest, covers)
    if latest is not None and fresh:
        return latest
    return checkpoints.checkpoint_now(org_id)


def checkpoint_for_envelope(
    db: Database, checkpoints: SignsOnDemand, org_id: str, envelope_id: str, until_log: str | None = None
) -> CheckpointRow:
    """A fresh checkpoint covering every event of one envelope (the question a bundle or certificate asks), in the
    log its chain is in now (or ``until_log``, the chain's last log of a transferor's part). A chain that crossed
    logs gets a fresh checkpoint in each earlier log too, covering the ``map.root`` each hand-off writes after
    itself, so that its bundle proves every segment."""
    with db.read_session() as session:
        events = envelope_events(session, envelope_id)
    if not events:
        return covering_checkpoint(db, checkpoints, org_id, 0)
    last: dict[str, int] = {}
    for event in events:
        last[event.org_id] = event.leaf_index
    log = until_log if until_log in last else events[-1].org_id
    for other, index in last.items():
        if other != log:
            covering_checkpoint(db, checkpoints, other, index + 2)  # the hand-off and its map commit
    return covering_checkpoint(db, checkpoints, log, last[log] + 1)
