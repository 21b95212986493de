"""Every kind of fault the verifier reports, in one place: its stable code, what it means, what it names.

A code is stable across versions (alerting and the ledger's ``integrity.failed`` events switch on it). A code
whose ``log`` flag is set is a fault of an organisation's log itself: such a log gets no new ledger entries,
since the next checkpoint would sign the tampered tree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    code: str
    meaning: str
    log: bool = False  # a fault of the log: the verifier then writes no event into it


_CODES = (
    Code("Object.Missing", "a recorded version of an authoritative object is not in storage"),
    Code("Object.BytesChanged", "the stored bytes (or the checksum S3 stored) differ from the recorded SHA-256"),
    Code("Object.ExtraVersion", "another version or a delete marker sits on a recorded object's key"),
    Code("Object.LockRemoved", "the recorded version is not under a COMPLIANCE lock"),
    Code("Object.LockShortened", "the version's retention ends before the recorded date"),
    Code(
        "Object.HoldMismatch",
        "the version's legal hold differs from what the log last recorded (vault.legal_hold_set or _cleared)",
    ),
    Code("Object.Unrecorded", "an object under the authoritative prefix is named by no record"),
    Code(
        "Object.Unknown", "an object outside every place the vault writes, or under an organisation that does not exist"
    ),
    Code("Object.Unreadable", "a read failed with a server error after bounded retries (possibly damaged bytes)"),
    Code(
        "Record.Edited",
        "a record row differs from its vault-in, release, retention or legal-hold entries (hash, key, date, hold)",
    ),
    Code("Record.Unlogged", "a vault record, its release or a document row that the envelope's chain does not record"),
    Code("Record.Deleted", "the envelope's chain records a vault-in, a release or a document that the rows lack"),
    Code("Envelope.Edited", "the envelope row (secured party, state, title) differs from what its chain implies"),
    Code(
        "Control.Unsupported",
        "the envelope row names a controller or custodian that its chain's completed transfers do not support",
    ),
    Code("Vault.ClaimUnfinished", "a vault-in claim older than the grace period was neither recorded nor released"),
    Code("Log.EntryEdited", "an entry no longer hashes to its leaf or its stored hash", log=True),
    Code("Log.EntriesMissing", "leaf indexes have a gap: entries were deleted", log=True),
    Code("Log.EntryInserted", "an entry sits at a position it does not name, or beyond the log's size", log=True),
    Code("Log.RootMismatch", "the entries no longer produce the root a checkpoint signed", log=True),
    Code("Log.TileEdited", "a stored tile's interior is not the one its bottom row implies", log=True),
    Code("Log.Inconsistent", "a consistency proof between consecutive checkpoints does not verify", log=True),
    Code("Chain.Broken", "an envelope's hash chain has a gap, a reordering or a wrong predecessor", log=True),
    Code("Map.RootMismatch", "a committed head-map root is not the map the entries produce", log=True),
    Code("Checkpoint.Missing", "a checkpoint is in the database but not in WORM, or the other way round", log=True),
    Code("Checkpoint.Mismatch", "the database checkpoint differs from the WORM one", log=True),
    Code(
        "Checkpoint.KeyCompromised",
        "a checkpoint is signed by a revoked key, and no configured witness or TSA dates it before the compromise",
    ),
    Code("Checkpoint.Unlocked", "a WORM checkpoint is not COMPLIANCE-locked, or its retention was shortened", log=True),
    Code(
        "Checkpoint.Forged",
        "a WORM checkpoint (or a note at a checkpoint's key) is not the vault's signed note for this log",
        log=True,
    ),
    Code("Checkpoint.AheadOfLog", "a checkpoint note or row exists for a size the log has not reached: planted"),
    Code("Checkpoint.ExtraVersion", "another version or a delete marker sits on a checkpoint's key", log=True),
    Code("Copy.Missing", "a registered copy is not in the copies bucket"),
    Code("Copy.Unregistered", "an object in the copies bucket is not in the copy register"),
    Code("Copy.Unmarked", "a copy lacks its mark on some page, or is byte-identical to the original"),
    Code("Copy.Altered", "a copy's bytes differ from the register, or another version sits on its key"),
    Code("Copy.Unlogged", "a copy row with no vault.copy_issued entry in its chain, or differing from it"),
    Code("Key.Unlogged", "an API key row that its organisation's log never issued"),
    Code("Key.Edited", "an API key row's scopes, dates or owner differ from its log entries"),
    Code("Copy.Deleted", "the envelope's chain records a copy that has no register row"),
    Code(
        "Import.Unlogged",
        "an import claim row recorded (or naming an envelope) that no envelope.imported entry records",
    ),
    Code("Import.Edited", "an import claim row's origin, release, key, organisation or dates differ from its entry"),
    Code("Import.Deleted", "the envelope's chain records an envelope.imported entry that has no import claim row"),
    Code(
        "Import.ClaimUnfinished",
        "an import claim older than the grace period was never recorded (the import died; import the package again)",
    ),
    Code("Storage.Misconfigured", "a bucket is missing, not versioned, or (authoritative) without Object Lock"),
)

CODES: dict[str, Code] = {c.code: c for c in _CODES}
LOG_CODES = frozenset(c.code for c in _CODES if c.log)


def known(code: str) -> str:
    """``code`` if registered; a typo in a check is a bug, caught the first time the check fires."""
    if code not in CODES:
        raise KeyError(f"unregistered finding code {code!r} (add it to compliance/finding_codes.py)")
    return code
