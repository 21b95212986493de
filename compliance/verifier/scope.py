"""What a run checks, fixed when it starts and recorded with it, so a resumed run checks the same things.

Filters compose: organisations, envelopes, records vaulted or changed since a time, and a shard ``I/N``.
Objects are sharded by a stable hash of their key, logs by organisation; shards 0..N-1 together cover every
object exactly once. The snapshot (start time, organisations, each log's size) makes the run blind to what the
live service adds while it runs: those are the next night's work.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from storage.ids import iso


def shard_of(text: str, count: int) -> int:
    """A stable shard in 0..count-1 (SHA-256, not Python's salted ``hash``): the same on every machine."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % count


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` with 0 <= I < N."""
    shape = re.fullmatch(r"([0-9]+)/([0-9]+)", text)  # ASCII digits: str.isdigit() also takes "\u00b2"
    if shape is None or not 0 <= int(shape[1]) < int(shape[2]):
        raise ValueError(f"--shard must be I/N with 0 <= I < N, not {text!r}")
    return int(shape[1]), int(shape[2])


@dataclass(frozen=True)
class Scope:
    orgs: tuple[str, ...] = ()  # empty: every organisation
    envelopes: tuple[str, ...] = ()  # empty: every envelope
    since: datetime | None = None
    shard: tuple[int, int] | None = None
    # The snapshot taken when the run starts.
    started_at: datetime | None = None
    log_sizes: dict[str, int] = field(default_factory=dict)  # org -> log size at start (the orgs in scope)

    @property
    def everything(self) -> bool:
        """No filter: only such a run may close open findings it did not see again."""
        return not self.orgs and not self.envelopes and self.since is None and self.shard is None

    def org_selected(self, org_id: str) -> bool:
        return not self.orgs or org_id in self.orgs

    def key_in_shard(self, key: str) -> bool:
        return self.shard is None or shard_of(key, self.shard[1]) == self.shard[0]

    def log_in_shard(self, org_id: str) -> bool:
        return self.shard is None or shard_of(org_id, self.shard[1]) == self.shard[0]

    def as_json(self) -> dict[str, Any]:
        return {
            "orgs": list(self.orgs),
            "envelopes": list(self.envelopes),
            "since": iso(self.since) if self.since else None,
            "shard": f"{self.shard[0]}/{self.shard[1]}" if self.shard else None,
            "started_at": iso(self.started_at) if self.started_at else None,
            "log_sizes": dict(self.log_sizes),
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Scope:
        def when(text: str | None) -> datetime | None:
            return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None

        return cls(
            orgs=tuple(value["orgs"]),
            envelopes=tuple(value["envelopes"]),
            since=when(value["since"]),
            shard=parse_shard(value["shard"]) if value["shard"] else None,
            started_at=when(value["started_at"]),
            log_sizes={k: int(v) for k, v in value["log_sizes"].items()},
        )
