"""Each organisation's log re-derived from its raw entries in one streaming pass, compared with WORM.

Events are streamed in leaf order in batches; the pass keeps only a compact range (a stack of at most log2(n)
subtree roots) for the tree; the per-envelope state (the last sequence number and entry hash of each chain, and
the head map for the ``map.root`` commits) lives in a temporary SQLite file behind a bounded cache
(``envelope_state``), so memory stays flat in envelopes. At each checkpoint size the recomputed root must equal
the signed one: that is consistency with every earlier checkpoint. Each consecutive pair is also checked with a
consistency proof from the tile store, and each checkpoint object itself (lock, retention, other versions,
signature, origin).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from itertools import groupby
from typing import Any

from sqlmodel import Session, col, select

from compliance.bundles.cross_log import handed_to
from compliance.headmap.sparse_tree import Head, map_key, tree_id_for
from compliance.ledger.chain import parse_entry
from compliance.ledger.checkpoint_format import Checkpoint, verify_checkpoint
from compliance.ledger.event_catalogue import MAP_ROOT, TRANSFER_ARRIVED
from compliance.ledger.events import log_size
from compliance.ledger.log_error import LogError
from compliance.ledger.merkle import EMPTY_ROOT, leaf_hash, node_hash, start_node, verify_consistency
from compliance.ledger.tiles import TILE_WIDTH, TiledTree, interior_of
from compliance.verifier.context import Context, MemoryRunLog
from compliance.verifier.envelope_state import EnvelopeState
from compliance.verifier.findings import Finding
from compliance.verifier.log_resume import LogState, rebuild
from compliance.verifier.reads import read_version
from compliance.verifier.scope import Scope
from storage.ids import as_utc
from storage.keys import checkpoint_key, checkpoint_key_beside
from storage.log_tiles import SqlTileStore
from storage.models import Checkpoint as CheckpointRow
from storage.models import Event
from storage.object_store import VersionEntry

BATCH = 1000
_sha256 = hashlib.sha256


class CompactRange:
    """The right edge of an RFC 6962 tree: one root per perfect subtree, so memory is O(log n)."""

    def __init__(self) -> None:
        self.size = 0
        self.stack: list[bytes] = []

    def append(self, leaf: bytes) -> None:
        self.size += 1
        merges, h = self.size, leaf
        while not merges & 1:
            n = start_node()
            n.update(self.stack.pop())
            n.update(h)
            h = n.digest()
            merges >>= 1
        self.stack.append(h)

    def root(self) -> bytes:
        if not self.stack:
            return EMPTY_ROOT
        root = self.stack[-1]
        for left in reversed(self.stack[:-1]):
            root = node_hash(left, root)
        return root


@dataclass
class _Signed:
    size: int
    root: bytes


class LogAudit:
    """One organisation's log, up to ``limit`` (its size when the run started)."""

    def __init__(self, ctx: Context, org_id: str, limit: int) -> None:
        self.ctx, self.org_id, self.limit = ctx, org_id, limit
        self.tree = CompactRange()
        self.envelopes = EnvelopeState(tree_id_for(org_id), ctx.tuning.state_cache, ctx.tuning.scratch_dir)
        self.expected_index = 0
        self.tile: tuple[int, bytes] | None = None
        self.last_signed: _Signed | None = None
        self.entries = 0  # audited in this process
        self.last_map_root = -1
        self.faulty = False  # a log finding so far: no resumable state is saved past it

    def report(self, code: str, message: str, **details: Any) -> None:
        self.faulty = True
        self.ctx.report(Finding(code, message, {"org_id": self.org_id, **details}))

    def state(self) -> LogState:
        signed = (self.last_signed.size, self.last_signed.root) if self.last_signed else None
        return LogState(self.tree.size, tuple(self.tree.stack), signed, self.last_map_root)

    def restore(self, session: Session, state: LogState) -> None:
        """Continue from a saved position of a clean prefix (see ``log_resume``)."""
        self.tree.size, self.tree.stack = state.size, list(state.stack)
        self.last_signed = _Signed(*state.signed) if state.signed else None
        self.expected_index, self.last_map_root = state.size, state.last_map_root
        rebuild(session, self.org_id, state, self.envelopes)

    def close(self) -> None:
        self.envelopes.close()

    # --- entries ------------------------------------------------------------------------------------------

    def _stored_leaf(self, session: Session, index: int) -> bytes | None:
        tile_index = index // TILE_WIDTH
        if self.tile is None or self.tile[0] != tile_index:
            tile = SqlTileStore(session, self.org_id).read_tiles({(0, tile_index)}).get((0, tile_index))
            self.tile = (tile_index, b"" if tile is None else tile.hashes)
            if tile is not None and tile.interior and tile.interior != interior_of(tile.hashes):
                # Proofs and roots are read from interiors: one that its own row does not produce is an edit.
                self.report(
                    "Log.TileEdited", "a tile's stored interior is not the one its hashes imply", tile=tile_index
                )
        offset = (index % TILE_WIDTH) * 32
        stored = self.tile[1][offset : offset + 32]
        return stored if len(stored) == 32 else None

    def entry(self, session: Session, event: Event) -> None:
        index = event.leaf_index
        if index > self.expected_index:
            self.report(
                "Log.EntriesMissing",
                "leaf indexes have a gap: entries were deleted",
                leaf_index=self.expected_index,
                missing=[self.expected_index, index - 1],
            )
        elif index < self.expected_index:
            self.report("Log.EntryInserted", "a second entry at one leaf index", leaf_index=index)
        self.expected_index = index + 1
        leaf = leaf_hash(event.entry)
        where = {"leaf_index": index, "envelope_id": event.envelope_id}
        if _sha256(event.entry).hexdigest() != event.entry_hash or self._stored_leaf(session, index) != leaf:
            self.report("Log.EntryEdited", "an entry no longer hashes to its leaf or its stored hash", **where)
        try:
            value = parse_entry(event.entry)
        except LogError as exc:
            self.report("Log.EntryEdited", f"an entry is not canonical: {exc.message}", **where)
            value = {}
        if value and (value.get("index") != index or value.get("log") != self.org_id):
            self.report(
                "Log.EntryInserted", "an entry sits at a position it does not name", **where, names=value.get("index")
            )
        if value and value.get("envelope") != event.envelope_id:
            self.report("Log.EntryEdited", "an entry's envelope differs from its row", **where)
        self._chain(event, value)
        self._map(event, value)
        self.tree.append(leaf)
        self.entries += 1

    def _chain(self, event: Event, value: dict[str, Any]) -> None:
        """Each entry links to the chain's last one in this log; a hand-off closes the chain here, and only a
        ``transfer.arrived`` opens it (again), linking to the entry it names in the other log (checked across
        logs by the row pass)."""
        envelope = value.get("envelope") if value else event.envelope_id
        if not isinstance(envelope, str):
            return
        key = map_key(envelope).to_bytes(32, "big")
        stored = self.envelopes.chains.get(key)  # (seq, entry hash + b"\x01" if the chain was handed off)
        last = None if stored is None else (stored[0], stored[1][:32].hex())
        left = stored is not None and len(stored[1]) > 32
        seq, prev = value.get("seq"), value.get("prev")
        expected_seq, expected_prev = (0, None) if last is None else (last[0] + 1, last[1])
        if value.get("type") == TRANSFER_ARRIVED.name:
            data = value.get("data") if isinstance(value.get("data"), dict) else {}
            assert isinstance(data, dict)
            sound = (
                (last is None or left)
                and isinstance(seq, int)
                and seq >= expected_seq
                and prev == data.get("entry_hash")
                and data.get("log") != self.org_id
            )
            expected_seq = seq if sound and isinstance(seq, int) else expected_seq
        else:
            sound = seq == expected_seq and prev == expected_prev and not left
        if not sound:
            self.report(
                "Chain.Broken",
                "the envelope's chain has a gap, a reordering, a wrong predecessor or an entry after its hand-off",
                envelope_id=envelope,
                leaf_index=event.leaf_index,
                seq=seq,
                expected_seq=expected_seq,
            )
        handed = b"\x01" if handed_to(value) is not None else b""  # handed off: only an arrival reopens the chain
        digest = _sha256(event.entry).digest() + handed
        self.envelopes.chains.put(key, (seq if isinstance(seq, int) else expected_seq, digest))

    def _map(self, event: Event, value: dict[str, Any]) -> None:
        envelope, seq, data = value.get("envelope"), value.get("seq"), value.get("data")
        if isinstance(envelope, str) and isinstance(seq, int):
            self.envelopes.pend(map_key(envelope), Head(seq, _sha256(event.entry).digest()))
        elif value.get("type") == MAP_ROOT.name and envelope is None:
            expected = self.envelopes.commit()
            self.last_map_root = event.leaf_index
            claimed = data.get("map_root") if isinstance(data, dict) else None
            version = data.get("version") if isinstance(data, dict) else None
            if claimed != expected.hex() or version != event.leaf_index:
                self.report(
                    "Map.RootMismatch",
                    "a committed head-map root is not the map the entries before it produce",
                    leaf_index=event.leaf_index,
                    claimed=claimed,
                    derived=expected.hex(),
                )

    # --- checkpoints --------------------------------------------------------------------------------------

    def checkpoint(self, session: Session, size: int, row: CheckpointRow | None, versions: list[VersionEntry]) -> None:
        key = checkpoint_key(self.org_id, size)
        if row is not None and row.s3_key != key:
            key, versions = self._written_beside(size, row, versions)
        where = {"size": size, "key": key}
        if self.tree.size < size:
            self.report(
                "Log.EntriesMissing", "the log ends before a signed checkpoint's size", **where, entries=self.tree.size
            )
        live = [v for v in versions if not v.delete_marker]
        if not live:
            self.report("Checkpoint.Missing", "a database checkpoint has no WORM copy", **where, missing_in="worm")
            return
        if row is None:
            self.report("Checkpoint.Missing", "a WORM checkpoint has no database row", **where, missing_in="database")
        if len(versions) > 1:
            self.report(
                "Checkpoint.ExtraVersion",
                "other versions or delete markers sit on the checkpoint's key",
                **where,
                versions=[v.version_id for v in versions],
            )
        version_id = row.s3_version_id if row is not None else live[-1].version_id
        body = bytearray()
        result = read_version(self.ctx, self.ctx.sources.authoritative, key, version_id, body.extend)
        if result.info is None:
            code = "Checkpoint.Missing" if result.failure == "missing" else "Object.Unreadable"
            self.report(code, f"the WORM checkpoint cannot be read ({result.failure})", **where, version_id=version_id)
            return
        info = result.info
        if info.lock_mode != "COMPLIANCE":
            self.report(
                "Checkpoint.Unlocked", "the WORM checkpoint is not COMPLIANCE-locked", **where, mode=info.lock_mode
            )
        elif row is not None and self.ctx.tuning.retention is not None and info.retain_until is not None:
            wanted = as_utc(row.created_at) + self.ctx.tuning.retention - timedelta(minutes=5)
            if as_utc(info.retain_until) < wanted:
                self.report(
                    "Checkpoint.Unlocked",
                    "the checkpoint's retention was shortened",
                    **where,
                    until=str(info.retain_until),
                )
        try:
            note = bytes(body).decode("utf-8")
            signed = verify_checkpoint(
                note, self.ctx.sources.checkpoint_verifier_for(note), self.ctx.sources.origin(self.org_id)
            )
            if signed.size != size:
                raise LogError("Log.Malformed", f"the note signs size {signed.size}")
        except (UnicodeDecodeError, LogError) as exc:
            reason = exc.message if isinstance(exc, LogError) else "not UTF-8"
            self.report("Checkpoint.Forged", f"the WORM checkpoint is not the vault's note: {reason}", **where)
            return
        self._key_sound(note, row, where)
        if row is not None and (row.note != note or row.root_hash != signed.root_hash.hex()):
            self.report("Checkpoint.Mismatch", "the database checkpoint differs from the WORM one", **where)
        if self.tree.size != size or self.tree.root() != signed.root_hash:
            self.report("Log.RootMismatch", "the entries no longer produce the signed root", **where)
        self._consistency(session, signed)

    def _key_sound(self, note: str, row: CheckpointRow | None, where: dict[str, Any]) -> None:
        """A checkpoint by a revoked key stands only if a configured witness or TSA dates it before the compromise."""
        sources = self.ctx.sources
        if sources.keys is None:
            return
        _, period = sources.keys.verifier_for_note(note)
        token = row.timestamp_token if row is not None else None
        try:
            sources.checkpoint_trust.check_key(sources.keys, period, note, token)
        except LogError as exc:
            self.report("Checkpoint.KeyCompromised", exc.message, **where, generation=period.generation)

    def _written_beside(
        self, size: int, row: CheckpointRow, versions: list[VersionEntry]
    ) -> tuple[str, list[VersionEntry]]:
        """A checkpoint the publisher wrote beside a planted note: report the note, then check the one beside."""
        key = checkpoint_key(self.org_id, size)
        beside = checkpoint_key_beside(self.org_id, size, _sha256(row.note.encode()).hexdigest())
        if row.s3_key != beside:
            self.report(
                "Checkpoint.Mismatch",
                "the database checkpoint names a WORM key that is not its own",
                size=size,
                key=row.s3_key,
                expected=[key, beside],
            )
        if any(not v.delete_marker for v in versions):
            self.report(
                "Checkpoint.Forged",
                "a note that is not the vault's holds the checkpoint's key; the vault's note was written beside it",
                size=size,
                key=key,
                written_beside=row.s3_key,
            )
        return row.s3_key, [v for v in self.ctx.sources.authoritative.list_entries(row.s3_key) if v.key == row.s3_key]

    def beyond(self, size: int, row: CheckpointRow | None, versions: list[VersionEntry], log_now: int) -> None:
        """A checkpoint (WORM note or database row) at a size the log has not reached, even now: planted."""
        if size <= log_now:
            return  # signed after this run started: the next run checks it
        if any(not v.delete_marker for v in versions):
            self.report(
                "Checkpoint.AheadOfLog",
                "a note sits at a checkpoint key for a size the log has not reached",
                size=size,
                key=checkpoint_key(self.org_id, size),
                log_size=log_now,
            )
        if row is not None:
            self.report(
                "Checkpoint.AheadOfLog",
                "a database checkpoint signs a size the log has not reached",
                size=size,
                key=row.s3_key,
                log_size=log_now,
            )

    def _consistency(self, session: Session, signed: Checkpoint) -> None:
        previous = self.last_signed
        self.last_signed = _Signed(signed.size, signed.root_hash)
        if previous is None or previous.size == 0:
            return
        try:
            tree = TiledTree(SqlTileStore(session, self.org_id), signed.size)  # the database, not a cache
            proof = tree.consistency_proof(previous.size, signed.size)
            verify_consistency(previous.size, signed.size, proof, previous.root, signed.root_hash)
        except LogError as exc:
            self.report(
                "Log.Inconsistent",
                f"no valid consistency proof from size {previous.size}: {exc.message}",
                size=signed.size,
                from_size=previous.size,
            )


def _worm_checkpoints(ctx: Context, org_id: str) -> Iterator[tuple[int, list[VersionEntry]]]:
    prefix = checkpoint_key(org_id, 0).rsplit("/", 1)[0] + "/"
    for key, group in groupby(ctx.sources.authoritative.list_entries(prefix), key=lambda e: e.key):
        name = key.rsplit("/", 1)[1]
        if name.isascii() and name.isdigit():
            yield int(name), list(group)


def _checkpoint_rows(session: Session, org_id: str) -> Iterator[CheckpointRow]:
    stmt = select(CheckpointRow).where(CheckpointRow.org_id == org_id).order_by(col(CheckpointRow.size))
    yield from session.exec(stmt.execution_options(yield_per=BATCH))


Listed = tuple[int, CheckpointRow | None, list[VersionEntry]]


def _checkpoints(ctx: Context, session: Session, org_id: str) -> Iterator[Listed]:
    """Database rows and WORM keys merged by size."""
    rows, worm = _checkpoint_rows(session, org_id), _worm_checkpoints(ctx, org_id)
    row, listed = next(rows, None), next(worm, None)
    item: tuple[CheckpointRow | None, list[VersionEntry]]
    while row is not None or listed is not None:
        if listed is None or (row is not None and row.size < listed[0]):
            assert row is not None
            size, item = row.size, (row, list[VersionEntry]())
            row = next(rows, None)
        elif row is None or listed[0] < row.size:
            size, item = listed[0], (None, listed[1])
            listed = next(worm, None)
        else:
            size, item = row.size, (row, listed[1])
            row, listed = next(rows, None), next(worm, None)
        yield size, item[0], item[1]


def _events(session: Session, org_id: str, start: int, limit: int) -> Iterator[Event]:
    stmt = (
        select(Event)
        .where(Event.org_id == org_id, col(Event.leaf_index) >= start, col(Event.leaf_index) < limit)
        .order_by(col(Event.leaf_index), col(Event.id))
    )
    yield from session.exec(stmt.execution_options(yield_per=BATCH))


def check_log(ctx: Context, org_id: str) -> None:
    """Audit one organisation's log; an interrupted audit resumes from its last saved clean position."""
    unit = f"log:{org_id}"
    progress = ctx.runs.unit_state(unit)
    if progress.done:
        return
    with ctx.sources.db.read_session() as events_session, ctx.sources.db.read_session() as session:
        limit = ctx.scope.log_sizes.get(org_id)
        if limit is None:
            limit = log_size(session, org_id)
        audit = LogAudit(ctx, org_id, limit)
        saved = LogState.decode(progress.position)
        if saved is not None:
            try:
                audit.restore(session, saved)
            except (LogError, TypeError, ValueError):  # an entry before the position changed since: start over
                audit.close()
                audit = LogAudit(ctx, org_id, limit)
        try:
            _audit(ctx, session, events_session, audit, unit, limit)
        finally:
            audit.close()
    ctx.count("entries", audit.entries)
    ctx.runs.save_position(unit, None, audit.tree.size, done=True)


def _audit(ctx: Context, session: Session, events_session: Session, audit: LogAudit, unit: str, limit: int) -> None:
    """The streaming pass of ``check_log`` from where ``audit`` stands."""
    org_id = audit.org_id
    start = audit.tree.size
    events = _events(events_session, org_id, start, limit)
    event = next(events, None)
    last_save = time.monotonic()

    def advance() -> None:
        nonlocal event, last_save
        assert event is not None
        audit.entry(session, event)
        event = next(events, None)
        size = audit.tree.size
        if (
            size % ctx.tuning.log_save_every == 0
            and not audit.faulty
            and time.monotonic() - last_save >= ctx.tuning.save_seconds
        ):
            position = audit.state().encode()
            if position is not None:
                ctx.runs.save_position(unit, position, size)
                last_save = time.monotonic()
        ctx.log_step()

    beyond: list[Listed] = []
    for size, row, versions in _checkpoints(ctx, session, org_id):
        if size > limit:
            beyond.append((size, row, versions))
            continue
        if size < start:
            continue  # verified before the interruption
        while event is not None and audit.tree.size < size:
            advance()
        audit.checkpoint(session, size, row, versions)
    while event is not None:
        advance()
    if beyond:
        with ctx.sources.db.read_session() as now:
            log_now = log_size(now, org_id)  # the log may have grown since the run started
        for size, row, versions in beyond:
            audit.beyond(size, row, versions, log_now)
    if audit.expected_index < limit:
        audit.report(
            "Log.EntriesMissing",
            "the log ends before its recorded size",
            leaf_index=audit.expected_index,
            size=limit,
        )


def audit_log(sources: Any, org_id: str) -> list[Finding]:
    """Every finding of one organisation's log, recording nothing (for tests and library callers)."""
    runs = MemoryRunLog()
    check_log(Context(sources, Scope(), runs), org_id)
    return list(runs.findings.values())
