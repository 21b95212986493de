"""``evault rebuild --from-bucket``: a fresh database from the WORM bucket alone (and the vault's public keys).

For each organisation's log in the bucket: the newest checkpoint the vault's keys sign, every entry it covers
checked against its root (``vault/rebuild/bucket_log.py``). Then the entries are replayed in log order into the
rows they imply (``vault/rebuild/replay.py``), the logs merged so that a chain handed from one log to another
replays in its own order, and the head map re-derived at every ``map.root`` entry, whose root must equal the one
the entry names. Everything is read and checked before one row is written; then the rows, and each
organisation's events (the exact entry bytes), tiles, log state, checkpoints and map commits, commit together.
Only an empty database is rebuilt into: a vault that already holds rows is refused, never merged.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, select

from compliance.checkpoints.publisher import origin_for
from compliance.headmap.sparse_tree import Head, HeadMap, map_key, tree_id_for
from compliance.ledger.chain import parse_entry
from compliance.ledger.event_catalogue import MAP_ROOT
from compliance.ledger.log_error import LogError
from compliance.ledger.merkle import leaf_hash
from compliance.ledger.note import NoteVerifier
from compliance.ledger.tiles import MemoryTileStore, TiledTree
from storage.db import Database
from storage.errors import ObjectMissing
from storage.keys import copy_key
from storage.log_tiles import SqlTileStore
from storage.models import (
    Ceremony,
    Checkpoint,
    Envelope,
    Event,
    LogState,
    MapLeaf,
    MapRoot,
    Organisation,
    VaultRecord,
)
from storage.object_store import ObjectStore
from vault.ceremony.document import pdf_page_sizes
from vault.pdf_inspect import page_count
from vault.rebuild.bucket_log import BucketLog, RebuildRefused, entry_hash, organisations, read_log, signed_notes
from vault.rebuild.replay import step_for
from vault.rebuild.rows import Entry, Rows, parse_time

log = logging.getLogger("evault.rebuild")

# Tables whose rows say a vault lives in this database (signing_key rows are configuration, restored with the keys).
_VAULT_TABLES = (Organisation, Envelope, Event, VaultRecord, LogState)


@dataclass(frozen=True)
class Rebuilt:
    """What one organisation's rebuild wrote."""

    org_id: str
    log_size: int
    envelopes: int
    checkpoints: int
    map_commits: int

    def as_json(self) -> dict[str, object]:
        return self.__dict__.copy()


@dataclass
class _Log:
    """One organisation's log, checked and replayed, not yet written."""

    bucket: BucketLog
    entries: list[Entry]
    rows: Rows
    map_leaves: list[MapLeaf]
    map_roots: list[MapRoot]


def check_empty(db: Database) -> None:
    with db.read_session() as session:
        for table in _VAULT_TABLES:
            count = session.exec(select(func.count()).select_from(table)).one()
            if count:
                raise RebuildRefused(
                    "Rebuild.NotEmpty",
                    f"the database already holds a vault ({count} rows in {table.__tablename__}); "
                    "rebuild into an empty database (a new EVAULT_DATABASE_URL)",
                    table=str(table.__tablename__),
                )


def _entries(bucket: BucketLog) -> list[Entry]:
    out = []
    for index, raw in enumerate(bucket.entries):
        try:
            value = parse_entry(raw)
        except LogError as exc:
            raise RebuildRefused(
                "Rebuild.Inconsistent", f"entry {index} of {bucket.org_id} is not canonical JSON: {exc.message}"
            ) from None
        if value.get("log") != bucket.org_id or value.get("index") != index:
            raise RebuildRefused(
                "Rebuild.Inconsistent", f"entry {index} of {bucket.org_id} names another log or position"
            )
        actor, data = value.get("actor"), value.get("data")
        actor = actor if isinstance(actor, dict) else {}
        out.append(
            Entry(
                org_id=bucket.org_id,
                index=index,
                type=str(value.get("type")),
                time=parse_time(value.get("time")),
                envelope_id=value.get("envelope"),
                key_id=actor.get("key_id"),
                data=data if isinstance(data, dict) else {},
                seq=value.get("seq") if isinstance(value.get("seq"), int) else None,
            )
        )
    return out


def _head_map(org_id: str, entries: list[Entry], raw: list[bytes]) -> tuple[list[MapLeaf], list[MapRoot]]:
    """The head map committed at each ``map.root`` entry, re-derived; a root other than the entry's is refused."""
    head_map = HeadMap(tree_id_for(org_id))
    leaves: list[MapLeaf] = []
    roots: list[MapRoot] = []
    pending: dict[int, tuple[str, int, str]] = {}  # envelope key -> (envelope id, seq, entry hash)
    for entry, blob in zip(entries, raw, strict=True):
        if entry.envelope_id is not None:
            pending[map_key(entry.envelope_id)] = (entry.envelope_id, _seq(entry), entry_hash(blob))
        if entry.type != MAP_ROOT.name:
            continue
        version = entry.data["version"]
        if version != entry.index:
            raise RebuildRefused("Rebuild.Inconsistent", f"map.root {entry.index} of {org_id} maps another size")
        root = head_map.update({key: Head(seq, bytes.fromhex(h)) for key, (_, seq, h) in pending.items()})
        if root.hex() != entry.data["map_root"]:
            raise RebuildRefused(
                "Rebuild.Inconsistent",
                f"the head map re-derived at {entry.index} of {org_id} has another root than its map.root entry",
            )
        leaves += [
            MapLeaf(org_id=org_id, envelope_key=f"{key:064x}", version=version, seq=seq, entry_hash=h)
            for key, (_, seq, h) in pending.items()
        ]
        roots.append(MapRoot(org_id=org_id, version=version, root_hash=root.hex(), entry_index=entry.index))
        pending = {}
    return leaves, roots


def _seq(entry: Entry) -> int:
    if entry.seq is None:
        raise RebuildRefused("Rebuild.Inconsistent", f"entry {entry.index} of {entry.org_id} names no chain position")
    return entry.seq


def _replay(rows: Rows, logs: list[tuple[BucketLog, list[Entry]]]) -> None:
    """Replay every log into ``rows``, merged so that each envelope's chain is replayed in its order: a log waits
    at an entry of a chain that goes on from another log (after a hand-off) until that log has caught up."""
    cursors = [0] * len(logs)
    following: dict[str, int] = {}  # envelope -> the seq its chain continues with
    while True:
        moved = False
        for number, (_, entries) in enumerate(logs):
            while cursors[number] < len(entries):
                entry = entries[cursors[number]]
                if entry.envelope_id is not None:
                    if _seq(entry) != following.get(entry.envelope_id, 0):
                        break
                    following[entry.envelope_id] = _seq(entry) + 1
                step_for(entry)(rows, entry)
                cursors[number] += 1
                moved = True
        if not moved:
            break
    for (bucket, entries), cursor in zip(logs, cursors, strict=True):
        if cursor < len(entries):
            entry = entries[cursor]
            raise RebuildRefused(
                "Rebuild.Inconsistent",
                f"entry {entry.index} of {bucket.org_id} continues a chain no log leads to (seq {entry.seq})",
            )
        if bucket.org_id not in rows.organisations:
            raise RebuildRefused("Rebuild.Inconsistent", f"the log of {bucket.org_id} has no org.created entry")


def _objects(rows: Rows, worm: ObjectStore, copies: ObjectStore, staging: ObjectStore | None) -> None:
    """What the log leaves to the objects themselves: page counts, each copy's object version and size, and
    each ceremony's staged document (while the staging bucket still holds it)."""
    for document in rows.documents.values():
        if document.s3_bucket != worm.bucket:
            raise RebuildRefused(
                "Rebuild.Inconsistent",
                f"document {document.id} lies in bucket {document.s3_bucket}, not in {worm.bucket}",
            )
        document.page_count = page_count(worm.read(document.s3_key, document.s3_version_id))
    for copy_id in rows.unresolved_copies:
        copy = rows.copies[copy_id]
        key = copy_key(copy.org_id, copy.envelope_id, copy.id)
        info = copies.head(key, None)
        copy.s3_bucket, copy.s3_key, copy.s3_version_id, copy.size = copies.bucket, key, info.version_id, info.size
    if staging is not None:
        for ceremony in rows.ceremonies.values():
            _staged(ceremony, staging)


def _staged(ceremony: Ceremony, staging: ObjectStore) -> None:
    """The staged document's version, and what an entry logged before size and page sizes leaves out; nothing
    when it is gone (a vaulted ceremony's is deleted) or another object lies at its key."""
    assert ceremony.s3_key is not None  # the key is a function of the logged ids
    try:
        info = staging.head(ceremony.s3_key, None)
    except ObjectMissing:
        return
    if info.sha256_hex not in (None, ceremony.sha256):
        return
    ceremony.s3_version_id = info.version_id
    if ceremony.size is None or ceremony.pages is None:
        data = staging.read(ceremony.s3_key, info.version_id)
        if hashlib.sha256(data).hexdigest() == ceremony.sha256:
            ceremony.size, ceremony.pages = len(data), pdf_page_sizes(io.BytesIO(data))


def _write_rows(session: Session, rows: Rows) -> None:
    for group in (
        list(rows.organisations.values()),
        list(rows.keys.values()),
        list(rows.envelopes.values()),
        list(rows.subjects.values()),
        list(rows.records.values()),
        list(rows.documents.values()),
        list(rows.copies.values()),
        [*rows.mins.values(), *rows.amendments, *rows.attestations, *rows.imports, *rows.signing_keys],
        [*rows.ceremonies.values(), *rows.recipients.values()],
    ):
        session.add_all(group)
        session.flush()


def _write(session: Session, replayed: _Log, organisation: Organisation) -> None:
    bucket = replayed.bucket
    for entry, raw in zip(replayed.entries, bucket.entries, strict=True):
        seq = None if entry.envelope_id is None else _seq(entry)
        session.add(
            Event(
                org_id=bucket.org_id,
                leaf_index=entry.index,
                envelope_id=entry.envelope_id,
                chain_seq=seq,
                event_type=entry.type,
                occurred_at=entry.time,
                entry=raw,
                entry_hash=entry_hash(raw),
            )
        )
    session.flush()
    SqlTileStore(session, bucket.org_id).write_tiles(bucket.tiles.tiles)
    session.add(LogState(org_id=bucket.org_id, size=bucket.size))
    for signed in bucket.notes:
        size = signed.checkpoint.size
        # When it was signed is not in the note: the time of the last entry it covers (its map.root) stands in.
        signed_at = replayed.entries[size - 1].time if size else organisation.created_at
        session.add(
            Checkpoint(
                org_id=bucket.org_id,
                size=signed.checkpoint.size,
                root_hash=signed.checkpoint.root_hash.hex(),
                note=signed.note,
                s3_key=signed.key,
                s3_version_id=signed.version_id,
                timestamp_token=signed.timestamp_token,
                created_at=signed_at,
            )
        )
    session.add_all(replayed.map_leaves)
    session.add_all(replayed.map_roots)


def _continued(bucket: BucketLog, backup: Sequence[tuple[int, bytes]]) -> BucketLog:
    """The signed log followed by a backup's entries logged after its latest checkpoint; the backup must hold
    the signed entries byte for byte (else it is another history, refused)."""
    by_index = dict(backup)
    for index, entry in enumerate(bucket.entries):
        if by_index.get(index, entry) != entry:
            raise RebuildRefused(
                "Restore.Diverged",
                f"entry {index} of {bucket.org_id} in the backup differs from the bucket's signed log",
                org_id=bucket.org_id,
                leaf_index=index,
            )
    tail = [by_index[i] for i in range(bucket.size, bucket.size + len(by_index)) if i in by_index]
    if not tail:
        return bucket
    store = MemoryTileStore()
    TiledTree(store, 0).append([leaf_hash(entry) for entry in [*bucket.entries, *tail]])
    log.info("restore: %s: %d entries after the latest checkpoint come from the backup", bucket.org_id, len(tail))
    return BucketLog(bucket.org_id, [*bucket.entries, *tail], store, bucket.notes)


def rebuild(
    db: Database,
    worm: ObjectStore,
    copies: ObjectStore,
    verifiers: Sequence[NoteVerifier],
    origin_prefix: str,
    *,
    backup_entries: Mapping[str, Sequence[tuple[int, bytes]]] | None = None,
    staging: ObjectStore | None = None,
) -> list[Rebuilt]:
    """Rebuild every organisation's log and projections from the bucket into the empty ``db``; with
    ``backup_entries`` (org id -> (leaf index, entry)), the log continues with those the bucket has not signed;
    with ``staging``, a ceremony in progress finds its staged document there.

    Every log is read, checked and replayed before anything is written, so a refusal leaves the database empty.
    """
    check_empty(db)
    logs: list[tuple[BucketLog, list[Entry]]] = []
    for org_id in organisations(worm):
        notes = signed_notes(worm, org_id, origin_for(origin_prefix, org_id), verifiers)
        if not notes:
            log.warning("rebuild: log/%s/ holds no checkpoint the vault's keys sign; skipped", org_id)
            continue
        bucket = _continued(read_log(worm, org_id, notes), (backup_entries or {}).get(org_id, ()))
        logs.append((bucket, _entries(bucket)))
    if not logs:
        raise RebuildRefused("Rebuild.NoLog", f"bucket {worm.bucket} holds no log with a checkpoint the vault signed")
    rows = Rows()
    _replay(rows, logs)
    _objects(rows, worm, copies, staging)
    replayed = [
        _Log(bucket, entries, rows, *_head_map(bucket.org_id, entries, bucket.entries)) for bucket, entries in logs
    ]
    with db.session() as session:
        _write_rows(session, rows)
        for one in replayed:
            _write(session, one, rows.organisations[one.bucket.org_id])
        session.add_all(list(rows.transfers.values()))  # after every organisation: a transfer names two
        session.flush()
        for one in replayed:  # after the transfers and every organisation's keys they name
            session.add_all(one.rows.countersignatures)
        session.flush()
    return [
        Rebuilt(
            org_id=one.bucket.org_id,
            log_size=one.bucket.size,
            envelopes=sum(1 for e in rows.envelopes.values() if e.org_id == one.bucket.org_id),
            checkpoints=len(one.bucket.notes),
            map_commits=len(one.map_roots),
        )
        for one in replayed
    ]
