"""Object keys are pure functions of identifiers (Tessera's layout rule): no I/O, tested on their own.

The authoritative key embeds the SHA-256 of the bytes, so a retried vault-in of the same document lands on the
same key (and the write-once put recognises it), while different bytes can never overwrite it.
"""

from __future__ import annotations

import re

_ID = re.compile(r"[a-z]{2,4}_[A-Za-z0-9]{8,40}")
AUTHORITATIVE_PREFIX = "authoritative/"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _check_id(value: str) -> str:
    if not _ID.fullmatch(value):
        raise ValueError(f"not an identifier: {value!r}")
    return value


def authoritative_prefix(org_id: str, envelope_id: str) -> str:
    """Everything under it is the envelope's authoritative copy: what is there beyond the record is a finding."""
    return f"{AUTHORITATIVE_PREFIX}{_check_id(org_id)}/{_check_id(envelope_id)}/"


def authoritative_key(org_id: str, envelope_id: str, position: int, sha256_hex: str) -> str:
    if position < 0 or not _SHA256.fullmatch(sha256_hex):
        raise ValueError("position must be >= 0 and sha256 64 lower-case hex digits")
    return f"{authoritative_prefix(org_id, envelope_id)}{position:03d}-{sha256_hex}.pdf"


def envelope_of_key(key: str) -> str | None:
    """The envelope id an authoritative key names, or None for a key outside the layout."""
    parts = key.removeprefix(AUTHORITATIVE_PREFIX).split("/")
    if not key.startswith(AUTHORITATIVE_PREFIX) or len(parts) != 3 or not _ID.fullmatch(parts[1]):
        return None
    return parts[1]


def copy_key(org_id: str, envelope_id: str, copy_id: str) -> str:
    return f"copies/{_check_id(org_id)}/{_check_id(envelope_id)}/{_check_id(copy_id)}.pdf"


def staging_key(org_id: str, envelope_id: str, upload_id: str) -> str:
    """Staged uploads: not authoritative, not locked, deleted when vaulted or expired."""
    return f"staging/{_check_id(org_id)}/{_check_id(envelope_id)}/{_check_id(upload_id)}.pdf"


def checkpoint_key(org_id: str, size: int) -> str:
    """Addressed by tree size: a rollback or a second history for the same size cannot hide in WORM."""
    if size < 0:
        raise ValueError("size must be >= 0")
    return f"log/{_check_id(org_id)}/checkpoint/{size:020d}"


def checkpoint_key_beside(org_id: str, size: int, note_sha256_hex: str) -> str:
    """Where a checkpoint goes when its key is taken by a note that is not the vault's: named by the SHA-256 of
    the vault's own signed note, which nobody can compute in advance without the vault's key."""
    if not _SHA256.fullmatch(note_sha256_hex):
        raise ValueError("note_sha256_hex must be 64 lower-case hex digits")
    return f"{checkpoint_key(org_id, size)}.{note_sha256_hex[:32]}"


def timestamp_key(org_id: str, size: int) -> str:
    return timestamp_key_of(checkpoint_key(org_id, size))


def timestamp_key_of(note_key: str) -> str:
    """The RFC 3161 token of the checkpoint note stored at ``note_key`` lies beside it."""
    return note_key + ".tsr"


def amendment_key(org_id: str, envelope_id: str, amendment_id: str, position: int, sha256_hex: str) -> str:
    """A PDF of an amendment (modification, assumption): in the WORM bucket beside the authoritative copy, under
    its own prefix, so it can never be taken for (or overwrite) a document of the copy itself."""
    if position < 0 or not _SHA256.fullmatch(sha256_hex):
        raise ValueError("position must be >= 0 and sha256 64 lower-case hex digits")
    ids = "/".join(_check_id(v) for v in (org_id, envelope_id, amendment_id))
    return f"amendments/{ids}/{position:03d}-{sha256_hex}.pdf"


def tlog_key(org_id: str, path: str) -> str:
    """A C2SP tlog-tiles resource (``tile/...``) of the organisation's log, beside its checkpoints."""
    if not path.startswith("tile/") or ".." in path:
        raise ValueError("not a tile path")
    return f"log/{_check_id(org_id)}/{path}"
