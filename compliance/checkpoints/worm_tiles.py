"""The log's tiles and entry bundles in the WORM bucket, in the C2SP tlog-tiles layout under ``log/<org>/``.

Written at each checkpoint, before its note, for every tile the checkpoint's size needs that the previous
checkpoint's did not; so every entry a signed checkpoint covers is locked in the bucket, and the bucket alone
proves the log up to its last checkpoint. Entries after it live only in the database (and its backups) until
the next checkpoint. Puts are write-once and idempotent: a retried checkpoint rewrites nothing. A key that
already holds other bytes (planted: the vault never writes two versions of a tile) is left alone and logged;
a client checks every tile against a signed checkpoint's root, so a planted tile cannot pass as the log.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlmodel import Session, col, select

from compliance.ledger.log_error import CORRUPT, LogCorrupt
from compliance.ledger.merkle import HASH_SIZE
from compliance.ledger.tile_paths import bundle, entries_path, tile_path, tiles_between
from compliance.ledger.tiles import TILE_HEIGHT
from storage.errors import ObjectConflict, ObjectMissing
from storage.keys import tlog_key
from storage.log_tiles import SqlTileStore
from storage.models import Event
from storage.object_store import ObjectStore

log = logging.getLogger("evault.checkpoints")
CONTENT_TYPE = "application/octet-stream"


def exported_size(worm: ObjectStore, org_id: str, size: int) -> int:
    """``size`` if the bucket holds its level-0 tile (the tiles of every earlier checkpoint were written
    before its note), else 0: a log checkpointed before tiles were exported is exported from the start."""
    if size == 0:
        return 0
    last = [ref for ref in tiles_between(0, size) if ref[0] == 0][-1]
    try:
        worm.head(tlog_key(org_id, tile_path(*last)), None)
    except ObjectMissing:
        return 0
    return size


def export_tiles(
    session: Session, worm: ObjectStore, org_id: str, old_size: int, new_size: int, retain_until: datetime
) -> int:
    """Write the tiles and entry bundles a tree of ``new_size`` adds to one of ``old_size``; returns how many."""
    refs = list(tiles_between(old_size, new_size))
    stored = SqlTileStore(session, org_id).read_tiles({(level, index) for level, index, _ in refs})
    written = 0
    for level, index, width in refs:
        tile = stored.get((level, index))
        blob = b"" if tile is None else tile.hashes[: width * HASH_SIZE]
        if len(blob) != width * HASH_SIZE:
            raise LogCorrupt(CORRUPT, f"tile ({level}, {index}) of {org_id} is shorter than its checkpoint needs")
        written += _put(worm, org_id, tile_path(level, index, width), blob, retain_until)
        if level == 0:
            entries = _bundle(session, org_id, index, width)
            written += _put(worm, org_id, entries_path(index, width), entries, retain_until)
    return written


def _bundle(session: Session, org_id: str, index: int, width: int) -> bytes:
    first = index << TILE_HEIGHT
    entries = session.exec(
        select(Event.entry)
        .where(Event.org_id == org_id, col(Event.leaf_index) >= first, col(Event.leaf_index) < first + width)
        .order_by(col(Event.leaf_index))
    ).all()
    if len(entries) != width:
        raise LogCorrupt(CORRUPT, f"entries {first}..{first + width} of {org_id} are not all in the database")
    return bundle([bytes(e) for e in entries])


def _put(worm: ObjectStore, org_id: str, path: str, blob: bytes, retain_until: datetime) -> int:
    key = tlog_key(org_id, path)
    try:
        worm.put_write_once(key, blob, retain_until=retain_until, content_type=CONTENT_TYPE)
    except ObjectConflict:
        log.error("tile %s holds bytes the vault did not write; left as found", key)
        return 0
    return 1
