"""One organisation's log as the WORM bucket holds it, trusted only once it hashes to a note the vault signed.

Under ``log/<org>/`` the bucket holds the signed checkpoint notes (``checkpoint/<size:020d>``, or beside a planted
one at ``<size:020d>.<hash>``, with an RFC 3161 token at ``.tsr``) and the C2SP tlog-tiles of every checkpoint.
The newest note the vault's keys sign is the log's head; its entry bundles are read, each entry hashed to a leaf,
the leaves compared with the stored level-0 tiles, and the tree rebuilt from them must have the signed root.
Nothing read from the bucket is believed before that: a planted or edited tile or bundle is a refusal.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from compliance.errors import EvaultError
from compliance.ledger.checkpoint_format import Checkpoint, verify_checkpoint
from compliance.ledger.log_error import LogError
from compliance.ledger.merkle import HASH_SIZE, leaf_hash
from compliance.ledger.note import NoteVerifier
from compliance.ledger.tile_paths import entries_path, tile_path, tiles_between, unbundle
from compliance.ledger.tiles import MemoryTileStore, TiledTree
from storage.errors import ObjectMissing
from storage.keys import tlog_key
from storage.object_store import ObjectStore

log = logging.getLogger("evault.rebuild")

_NOTE_NAME = re.compile(r"([0-9]{20})(\.[0-9a-f]{32})?")


class RebuildRefused(EvaultError):
    """The bucket (or the database) cannot be rebuilt from as it is; nothing was written."""

    category = "conflict"


@dataclass(frozen=True)
class SignedNote:
    """A checkpoint note of the log that the vault's keys sign, where it lies in the bucket."""

    checkpoint: Checkpoint
    note: str
    key: str
    version_id: str
    timestamp_token: bytes | None


@dataclass(frozen=True)
class BucketLog:
    """A log read back from WORM and checked: its entries, its tiles, and every signed note up to its head."""

    org_id: str
    entries: list[bytes]
    tiles: MemoryTileStore
    notes: list[SignedNote]  # ascending by size; the last one is the head

    @property
    def size(self) -> int:
        return len(self.entries)


def organisations(worm: ObjectStore) -> list[str]:
    """Every organisation with a log in the bucket (the ``log/<org>/`` prefixes)."""
    return [prefix.removeprefix("log/").rstrip("/") for prefix in worm.child_prefixes("log/")]


def _read(worm: ObjectStore, key: str) -> tuple[bytes, str]:
    info = worm.head(key, None)
    return worm.read(key, info.version_id), info.version_id


def signed_notes(worm: ObjectStore, org_id: str, origin: str, verifiers: Sequence[NoteVerifier]) -> list[SignedNote]:
    """Every note under the log's checkpoint prefix that one of ``verifiers`` signs for ``origin``, by size.

    A note that does not verify (planted by whoever holds the bucket's credentials) is logged and left out; of
    two notes for one size (the vault's written beside a planted one) the first that verifies is kept.
    """
    prefix = f"log/{org_id}/checkpoint/"
    by_size: dict[int, SignedNote] = {}
    for key, version_id in sorted(worm.list_all_versions(prefix)):
        match = _NOTE_NAME.fullmatch(key.removeprefix(prefix))
        if match is None:
            continue  # a timestamp token (.tsr), read beside its note
        try:
            note = worm.read(key, version_id).decode("utf-8")
            checkpoint = _verify(note, verifiers, origin)
        except (UnicodeDecodeError, LogError) as exc:
            log.error("rebuild: %s/%s is not a checkpoint the vault signed (%s); ignored", worm.bucket, key, exc)
            continue
        if checkpoint.size != int(match.group(1)) or checkpoint.size in by_size:
            continue
        by_size[checkpoint.size] = SignedNote(checkpoint, note, key, version_id, _token(worm, key))
    return [by_size[size] for size in sorted(by_size)]


def _verify(note: str, verifiers: Sequence[NoteVerifier], origin: str) -> Checkpoint:
    error: LogError | None = None
    for verifier in verifiers:
        try:
            return verify_checkpoint(note, verifier, origin)
        except LogError as exc:
            error = exc
    assert error is not None, "no verifier to check the note with"
    raise error


def _token(worm: ObjectStore, note_key: str) -> bytes | None:
    try:
        return _read(worm, note_key + ".tsr")[0]
    except ObjectMissing:
        return None


def _mismatch(org_id: str, message: str, **details: object) -> RebuildRefused:
    return RebuildRefused(
        "Rebuild.LogMismatch", f"the log of {org_id} in the bucket: {message}", org_id=org_id, **details
    )


def read_log(worm: ObjectStore, org_id: str, notes: list[SignedNote]) -> BucketLog:
    """The entries the newest signed note covers, checked tile by tile and against its root (and every older
    note's root); RebuildRefused at the first disagreement."""
    head = notes[-1].checkpoint
    entries: list[bytes] = []
    for level, index, width in tiles_between(0, head.size):
        if level != 0:
            continue
        try:
            bundle, _ = _read(worm, tlog_key(org_id, entries_path(index, width)))
            tile, _ = _read(worm, tlog_key(org_id, tile_path(0, index, width)))
        except ObjectMissing as exc:
            raise _mismatch(org_id, f"tile {index} (width {width}) is missing", error=str(exc)) from None
        try:
            found = unbundle(bundle)
        except ValueError as exc:
            raise _mismatch(org_id, f"entry bundle {index} does not parse: {exc}") from None
        hashes = b"".join(leaf_hash(entry) for entry in found)
        if len(found) != width or hashes != tile[: width * HASH_SIZE] or len(tile) != width * HASH_SIZE:
            raise _mismatch(org_id, f"entry bundle {index} does not hash to its level-0 tile", tile=index)
        entries += found
    store = MemoryTileStore()
    tree = TiledTree(store, 0)
    tree.append([leaf_hash(entry) for entry in entries])
    for signed in notes:
        if tree.root(signed.checkpoint.size) != signed.checkpoint.root_hash:
            raise _mismatch(
                org_id,
                f"the entries do not hash to the root signed at size {signed.checkpoint.size}",
                size=signed.checkpoint.size,
            )
    log.info("rebuild: %s: %d entries match %d signed checkpoints", org_id, len(entries), len(notes))
    return BucketLog(org_id, entries, store, notes)


def entry_hash(entry: bytes) -> str:
    return hashlib.sha256(entry).hexdigest()
