"""Signing checkpoints of each organisation's log and keeping them in two places.

A checkpoint goes to the database *and* to the WORM bucket under a compliance-mode lock, addressed by tree
size: an edit, deletion or rollback of the database alone then disagrees with what WORM holds. Witness
cosignatures and an RFC 3161 timestamp are added when configured.

Whoever holds the bucket's credentials can put a note at a checkpoint key before we do, even at sizes the log
has not reached yet. A note found there is adopted only when it is ours: signed by the vault's key, for this
log's origin, size and locally computed root. Anything else is ``Checkpoint.Forged``: logged at ERROR (the
alert), never stored in the database nor served, and bypassed, so it cannot block checkpointing: the vault's
note is written beside it, at a key named by the note's own hash (``checkpoint_key_beside``), which nobody can
take in advance without the vault's key. The database row names that key; ``evault verify`` reports the
planted note. A timestamp token meets a taken key the same way.

Each organisation is checkpointed under its own lock, and one organisation's failure (a refusing witness, a
failing TSA) is reported and does not hold up the others. Across processes and replicas the lock is the lease
``checkpointer:<org_id>`` (storage/leases.py), taken for one checkpoint and given up after it: never two
checkpointers for one log. The head-map commit and the checkpoint row are written only while that tenure still
holds (its row locked until commit), so a checkpointer that stalled past its lease writes nothing; the next
one adopts the WORM note it may have left. A busy lease is ``Checkpoint.Busy`` (503, Retry-After) on request
and skipped by the scheduled round.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from compliance.checkpoints.worm_tiles import export_tiles, exported_size
from compliance.errors import Unavailable
from compliance.headmap.sql_store import commit_head_map
from compliance.ledger.checkpoint_format import Checkpoint, sign_checkpoint, verify_checkpoint
from compliance.ledger.log_error import LogError
from compliance.ledger.note import NoteSigner
from compliance.ledger.tiles import TiledTree
from storage.db import Database
from storage.errors import ObjectConflict
from storage.ids import utcnow
from storage.keys import checkpoint_key, checkpoint_key_beside, timestamp_key_of
from storage.leases import Tenure, give_up, holds, new_holder, take_lease
from storage.log_tiles import SqlTileStore
from storage.models import Checkpoint as CheckpointRow
from storage.models import LogState
from storage.object_store import ObjectStore

ProofSource = Callable[[int, int], list[bytes]]
CHECKPOINT_FORGED = "Checkpoint.Forged"
CHECKPOINT_BUSY = "Checkpoint.Busy"
LEASE_SECONDS = 60  # a checkpointer that dies mid-checkpoint holds up its log this long at most


class LeaseLost(Unavailable):
    """Another checkpointer holds this log's lease, or took it over while we signed (503, Retry-After)."""


def checkpointer_lease(org_id: str) -> str:
    return f"checkpointer:{org_id}"


log = logging.getLogger("evault.checkpoints")


class Cosigner(Protocol):
    def cosign(self, note: str, checkpoint: Checkpoint, proof_for: ProofSource) -> str: ...


class Timestamper(Protocol):
    def timestamp(self, data: bytes) -> bytes: ...


def origin_for(prefix: str, org_id: str) -> str:
    """One log per organisation: its origin names the vault and the organisation."""
    return f"{prefix}/{org_id}"


def latest_checkpoint(session: Session, org_id: str) -> CheckpointRow | None:
    return session.exec(
        select(CheckpointRow).where(CheckpointRow.org_id == org_id).order_by(col(CheckpointRow.size).desc()).limit(1)
    ).first()


def tree_for(session: Session, org_id: str, size: int) -> TiledTree:
    """The tree that serves proofs and roots: it shares the process's committed tiles (``storage.shared_tiles``)."""
    return TiledTree(SqlTileStore(session, org_id, shared=True), size)


class CheckpointService:
    def __init__(
        self,
        db: Database,
        worm: ObjectStore,
        signer: NoteSigner,
        origin_prefix: str,
        retention: timedelta,
        cosigners: Sequence[Cosigner] = (),
        timestamper: Timestamper | None = None,
        lease_ttl: timedelta = timedelta(seconds=LEASE_SECONDS),
    ) -> None:
        self.db = db
        self.worm = worm
        self.signer = signer
        self.origin_prefix = origin_prefix
        self.retention = retention
        self.cosigners = cosigners
        self.timestamper = timestamper
        self.lease_ttl = lease_ttl
        self.holder = new_holder()  # this process's name on its checkpointer leases
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def origin(self, org_id: str) -> str:
        return origin_for(self.origin_prefix, org_id)

    def _org_lock(self, org_id: str) -> threading.Lock:
        """One lock per organisation: a slow witness or TSA for one log never holds up another."""
        with self._locks_guard:
            return self._locks.setdefault(org_id, threading.Lock())

    def consistency_proof(self, org_id: str, size1: int, size2: int) -> list[bytes]:
        with self.db.session() as session:
            return tree_for(session, org_id, size2).consistency_proof(size1, size2)

    def checkpoint_now(self, org_id: str) -> CheckpointRow:
        """Sign the log's current head unless the latest checkpoint already covers it; only under the log's lease."""
        with self._org_lock(org_id):
            name = checkpointer_lease(org_id)
            tenure = take_lease(self.db, name, self.holder, self.lease_ttl)
            if tenure is None:
                raise self._busy(org_id)
            log.debug("lease %s token %d taken by %s", name, tenure.token, self.holder)
            try:
                return self._checkpoint(org_id, tenure)
            finally:
                # Logged before the release: once released, another process may take the lease and log its
                # tenure before this line would, and the log would show two holders at once.
                log.debug("lease %s token %d giving up by %s", name, tenure.token, self.holder)
                give_up(self.db, name, self.holder)

    def _busy(self, org_id: str) -> LeaseLost:
        return LeaseLost(
            CHECKPOINT_BUSY,
            f"another process is checkpointing the log of {org_id}; retry shortly",
            retry_after_seconds=max(1, int(self.lease_ttl.total_seconds() / 10)),
        )

    def _checkpoint(self, org_id: str, tenure: Tenure) -> CheckpointRow:
        with self.db.session() as session:
            if not holds(session, tenure):
                raise self._busy(org_id)
            commit_head_map(session, org_id)  # the map.root entry becomes the last entry this checkpoint signs
            state = session.get(LogState, org_id)
            size = state.size if state else 0
            latest = latest_checkpoint(session, org_id)
            if latest is not None and latest.size >= size:
                return latest
            root = tree_for(session, org_id, size).root()
        checkpoint = Checkpoint(self.origin(org_id), size, root)
        note = sign_checkpoint(checkpoint, self.signer)
        for cosigner in self.cosigners:
            note += cosigner.cosign(note, checkpoint, lambda a, b: self.consistency_proof(org_id, a, b))
        return self._store(org_id, checkpoint, note, tenure)

    def _store(self, org_id: str, checkpoint: Checkpoint, note: str, tenure: Tenure) -> CheckpointRow:
        retain_until = utcnow() + self.retention
        self._export_tiles(org_id, checkpoint.size, retain_until)
        key, stored_version = checkpoint_key(org_id, checkpoint.size), None
        try:
            stored_version = self.worm.put_write_once(
                key, note.encode(), retain_until=retain_until, content_type="text/plain"
            ).version_id
        except ObjectConflict:
            # Another process signed this size first (cosignature times differ): its note is the record, but
            # only once it is proven to be ours and of this very tree. Anything else is planted: written beside.
            current = self.worm.head(key, None)
            adopted = self._adoptable(org_id, checkpoint, key, self.worm.read(key, current.version_id))
            if adopted is not None:
                note, stored_version = adopted, current.version_id
            else:
                key = checkpoint_key_beside(org_id, checkpoint.size, hashlib.sha256(note.encode()).hexdigest())
                stored_version = self.worm.put_write_once(
                    key, note.encode(), retain_until=retain_until, content_type="text/plain"
                ).version_id
        token = None
        if self.timestamper is not None:
            token = self.timestamper.timestamp(note.encode())
            self._store_timestamp(org_id, checkpoint.size, timestamp_key_of(key), token, retain_until)
        row = CheckpointRow(
            org_id=org_id,
            size=checkpoint.size,
            root_hash=checkpoint.root_hash.hex(),
            note=note,
            s3_key=key,
            s3_version_id=stored_version,
            timestamp_token=token,
            created_at=utcnow(),
        )
        try:
            with self.db.session() as session:
                if not holds(session, tenure):  # stalled past the lease: the next tenure's row is the record
                    log.warning("checkpoint of %s size %d not stored: lease lost", org_id, checkpoint.size)
                    raise self._busy(org_id)
                session.add(row)
        except IntegrityError:
            with self.db.session() as session:
                existing = session.get(CheckpointRow, (org_id, checkpoint.size))
                assert existing is not None
                return existing
        return row

    def _export_tiles(self, org_id: str, size: int, retain_until: datetime) -> None:
        """The tiles and entries this checkpoint covers, locked in the bucket before its note names them."""
        with self.db.session() as session:
            previous = latest_checkpoint(session, org_id)
            old = exported_size(self.worm, org_id, min(previous.size, size) if previous else 0)
            export_tiles(session, self.worm, org_id, old, size, retain_until)

    def _store_timestamp(self, org_id: str, size: int, key: str, token: bytes, retain_until: datetime) -> None:
        """The token beside its note; a key already taken by other bytes is alerted and bypassed likewise."""
        try:
            self.worm.put_write_once(key, token, retain_until=retain_until, content_type="application/timestamp-reply")
        except ObjectConflict:
            beside = f"{key}.{hashlib.sha256(token).hexdigest()[:32]}"
            log.error(
                "%s: another object holds %s/%s for %s size %d; the token goes to %s",
                CHECKPOINT_FORGED,
                self.worm.bucket,
                key,
                org_id,
                size,
                beside,
            )
            self.worm.put_write_once(
                beside, token, retain_until=retain_until, content_type="application/timestamp-reply"
            )

    def _adoptable(self, org_id: str, checkpoint: Checkpoint, key: str, found: bytes) -> str | None:
        """The note found at ``key`` if it is the vault's signed checkpoint of ``checkpoint``; else None, alerted."""
        reason = None
        try:
            note = found.decode("utf-8")
            theirs = verify_checkpoint(note, self.signer.verifier(), checkpoint.origin)
        except UnicodeDecodeError:
            reason = "not UTF-8"
        except LogError as exc:
            reason = f"{exc.code}: {exc.message}"
        else:
            if theirs != checkpoint:
                reason = f"signs size {theirs.size} with another root or extensions than this log's"
        if reason is None:
            return note
        log.error(
            "%s: refusing the note at %s/%s for %s size %d (%s); the vault's note is written beside it",
            CHECKPOINT_FORGED,
            self.worm.bucket,
            key,
            org_id,
            checkpoint.size,
            reason,
        )
        return None

    def due_organisations(self) -> list[str]:
        """Organisations whose log has grown past their latest checkpoint."""
        with self.db.session() as session:
            newest = (
                select(CheckpointRow.org_id, func.max(CheckpointRow.size).label("size"))
                .group_by(col(CheckpointRow.org_id))
                .subquery()
            )
            rows = session.exec(
                select(LogState.org_id)
                .outerjoin(newest, newest.c.org_id == LogState.org_id)
                .where((newest.c.size.is_(None)) | (newest.c.size < LogState.size))
                .order_by(col(LogState.org_id))
            ).all()
            return list(rows)

    def checkpoint_due(self, on_error: Callable[[str | None, Exception], None]) -> None:
        """One round: checkpoint each organisation whose log grew; a failure is reported per organisation."""
        try:
            due = self.due_organisations()
        except Exception as exc:  # a passing database fault: try again next round
            on_error(None, exc)
            return
        for org_id in due:
            try:
                self.checkpoint_now(org_id)
            except LeaseLost:
                continue  # another process checkpoints this log now
            except Exception as exc:  # one organisation's witness, TSA or forgery must not stop the others
                on_error(org_id, exc)

    def run_periodically(
        self, interval: float, stop: threading.Event, on_error: Callable[[str | None, Exception], None]
    ) -> None:
        """Checkpoint every organisation with new events every ``interval`` seconds until ``stop`` is set."""
        while not stop.wait(interval):
            self.checkpoint_due(on_error)
