"""Objects outside every known place: the per-organisation passes list only ``authoritative/<org>/``,
``copies/<org>/`` and ``log/<org>/checkpoint/`` (an amendment's PDFs under ``amendments/<org>/`` are in a known
place, though no pass re-reads them yet: docs/parties.md), so whatever sits elsewhere in the buckets (another prefix, an
organisation that does not exist, a stray name among the checkpoints, a name under ``log/<org>/tile/`` that is
not a tlog-tiles path) is found here, by one full listing of each bucket, and reported as ``Object.Unknown``
with its bucket and key.

Runs only when no organisation, envelope or ``--since`` filter narrows the run (a shard takes its share of the
keys); objects written after the run started are the next run's.
"""

from __future__ import annotations

import re

from sqlmodel import col, select

from compliance.ledger.tile_paths import parse_path
from compliance.verifier.context import Context
from compliance.verifier.findings import Finding
from compliance.verifier.objects import _in_window
from storage.models import Checkpoint as CheckpointRow
from storage.models import Organisation
from storage.object_store import ObjectStore

UNIT = "outside"
_SIZE = re.compile(r"[0-9]{20}")  # a checkpoint's own key (the log pass reads these)
_TOKEN_TAIL = re.compile(r"\.tsr(\.[0-9a-f]{32})?")  # a timestamp token, possibly written beside a taken key


def known_place(key: str, orgs: set[str], beside: set[str], bucket: str) -> bool:
    """Whether ``key`` is where the vault writes in this bucket (``authoritative`` or ``copies``); ``beside``
    holds the checkpoint keys the database names other than the plain ``<size>`` ones."""
    top, _, rest = key.partition("/")
    org, _, below = rest.partition("/")
    if org not in orgs or not below:
        return False
    if bucket == "copies":
        return top in ("copies", "staging")
    if top in ("authoritative", "amendments"):  # amendments: an amendment's PDFs, beside the record (parties.md)
        return True
    if top == "log" and below.startswith("tile/"):
        return _tile_path(below)
    if top != "log" or not below.startswith("checkpoint/"):
        return False
    if _SIZE.fullmatch(below.removeprefix("checkpoint/")) or key in beside:
        return True
    note_key, token, tail = key.partition(".tsr")
    note_ok = note_key in beside or _SIZE.fullmatch(note_key.rsplit("/", 1)[1]) is not None
    return bool(token) and note_ok and _TOKEN_TAIL.fullmatch(token + tail) is not None


def _tile_path(path: str) -> bool:
    try:
        parse_path(path)
    except ValueError:
        return False
    return True


def check_outside(ctx: Context) -> None:
    scope = ctx.scope
    if scope.orgs or scope.envelopes or scope.since is not None or ctx.runs.unit_state(UNIT).done:
        return
    with ctx.sources.db.read_session() as session:
        orgs = set(session.exec(select(Organisation.id)))
        beside = set(session.exec(select(CheckpointRow.s3_key).where(col(CheckpointRow.s3_key).contains("."))))
    stores: tuple[tuple[str, ObjectStore], ...] = (
        ("authoritative", ctx.sources.authoritative),
        ("copies", ctx.sources.copies),
    )
    for name, store in stores:
        for entry in store.list_entries(""):
            if ctx.stopping.is_set():
                return
            if known_place(entry.key, orgs, beside, name) or not scope.key_in_shard(entry.key):
                continue
            if not _in_window(ctx, entry.last_modified):
                continue
            ctx.report(
                Finding(
                    "Object.Unknown",
                    "an object outside every place the vault writes (or under an organisation that does not exist)",
                    {
                        "bucket": store.bucket,
                        "key": entry.key,
                        "version_id": entry.version_id,
                        "delete_marker": entry.delete_marker,
                    },
                )
            )
    ctx.runs.save_position(UNIT, None, 0, done=True)
