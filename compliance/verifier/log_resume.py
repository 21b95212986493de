"""Resuming a log audit inside the log: the streaming state at a durable position, and how it is rebuilt.

At multiples of ``log_save_every`` entries (2^14; at most every ``save_seconds``), while the audit has found
nothing in the log so far, the state that cannot be re-read cheaply is saved in the unit's position: the leaf
count, the compact range (one hash per set bit of the count: saving only at multiples of 2^14 keeps it to a
handful), the last signed checkpoint (size, root) and the leaf index of the last ``map.root`` entry. The
per-envelope state (each chain's last seq and entry hash, the head map and the heads pending since the last
map commit) is O(envelopes), too large to save; a resumed audit rebuilds it from the entries before the
position, one "latest entry per envelope" query each.

Why that is sound: the state is saved only over a prefix the audit found clean, where every entry hashes to
its leaf, is canonical, sits at the index it names, belongs to its row's envelope and links to its
predecessor. On such a prefix an envelope's latest entry (by leaf index) carries exactly the (seq, hash) the
streaming pass held. A prefix with a log finding is never saved: such a log is audited again from leaf 0.
An entry edited after the interruption is not re-checked (as in an uninterrupted run, which read it before
the edit); its new hash then breaks the next link of its chain, which the resumed audit reports.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from compliance.bundles.cross_log import handed_to
from compliance.headmap.sparse_tree import Head, map_key
from compliance.ledger.chain import parse_entry
from storage.models import Event

MAX_POSITION = 1024  # the column's width


@dataclass(frozen=True)
class LogState:
    size: int  # leaves audited: 0..size-1
    stack: tuple[bytes, ...]  # the compact range's subtree roots
    signed: tuple[int, bytes] | None  # the last checkpoint verified (size, root)
    last_map_root: int  # leaf index of the last map.root entry before ``size``, -1 if none

    def encode(self) -> str | None:
        """The unit's position text, or None when it would not fit (the next save point is tried)."""

        def b64(value: bytes) -> str:
            return base64.b64encode(value).decode()

        signed = f"{self.signed[0]}:{b64(self.signed[1])}" if self.signed else "-"
        text = f"log1;{self.size};{self.last_map_root};{signed};{','.join(b64(h) for h in self.stack)}"
        return text if len(text) <= MAX_POSITION else None

    @classmethod
    def decode(cls, text: str | None) -> LogState | None:
        if not text or not text.startswith("log1;"):
            return None
        try:
            _, size, last_map_root, signed, stack = text.split(";")
            signed_at = None
            if signed != "-":
                at, root = signed.split(":")
                signed_at = (int(at), base64.b64decode(root, validate=True))
            hashes = tuple(base64.b64decode(h, validate=True) for h in stack.split(",")) if stack else ()
            return cls(int(size), hashes, signed_at, int(last_map_root))
        except ValueError:  # not a position this code wrote: audit the log from leaf 0
            return None


def latest_heads(session: Session, org_id: str, start: int, end: int) -> dict[str, tuple[int, bytes, bool]]:
    """Each envelope's (seq, entry SHA-256, whether it hands the chain off) of its latest entry with
    ``start <= leaf_index < end``."""
    latest = (
        select(col(Event.envelope_id), func.max(Event.leaf_index).label("last"))
        .where(
            Event.org_id == org_id,
            col(Event.leaf_index) >= start,
            col(Event.leaf_index) < end,
            col(Event.envelope_id).is_not(None),
        )
        .group_by(col(Event.envelope_id))
        .subquery()
    )
    rows = session.exec(
        select(Event.envelope_id, Event.entry)
        .join(latest, (col(Event.leaf_index) == latest.c.last) & (col(Event.envelope_id) == latest.c.envelope_id))
        .where(Event.org_id == org_id)
        .execution_options(yield_per=1000)
    )
    heads: dict[str, tuple[int, bytes, bool]] = {}
    for envelope_id, entry in rows:
        value = parse_entry(entry)  # canonical: the prefix was audited clean
        seq: Any = value.get("seq")
        heads[str(envelope_id)] = (int(seq), hashlib.sha256(entry).digest(), handed_to(value) is not None)
    return heads


def rebuild(
    session: Session, org_id: str, state: LogState
) -> tuple[dict[str, tuple[int, str]], dict[int, Head], dict[int, Head], set[str]]:
    """(chains, heads committed by the last map.root, heads pending since it, chains handed out of this log) at
    ``state.size``."""
    committed_end = max(state.last_map_root, 0)
    committed = latest_heads(session, org_id, 0, committed_end)
    pending = latest_heads(session, org_id, committed_end, state.size)
    latest = {**committed, **pending}
    chains = {env: (seq, digest.hex()) for env, (seq, digest, _) in latest.items()}
    return (
        chains,
        {map_key(env): Head(seq, digest) for env, (seq, digest, _) in committed.items()},
        {map_key(env): Head(seq, digest) for env, (seq, digest, _) in pending.items()},
        {env for env, (_, _, left) in latest.items() if left},
    )
