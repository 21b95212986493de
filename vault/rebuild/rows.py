"""What a replay builds: the parsed entry a step reads, the rows it folds entries into, and the helpers that
every step shares (find the envelope an entry names, a committed person, a refusal naming the entry)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from storage.models import (
    Amendment,
    ApiKey,
    Ceremony,
    CopyRecord,
    DataSubject,
    Envelope,
    EnvelopeImport,
    MersMin,
    Organisation,
    OrgSigningKey,
    PaperInAttestation,
    ReceiptCountersignature,
    Recipient,
    Transfer,
    VaultedDocument,
    VaultRecord,
)
from vault.rebuild.bucket_log import RebuildRefused


@dataclass(frozen=True)
class Entry:
    """One parsed log entry: what a step reads."""

    org_id: str
    index: int
    type: str
    time: datetime
    envelope_id: str | None
    key_id: str | None
    data: dict[str, Any]
    seq: int | None = None  # the chain position an envelope entry names (a chain may cross logs)


@dataclass
class Rows:
    """The projections of the logs, built entry by entry (an envelope's chain may cross logs at a hand-off),
    written once every log replayed."""

    organisations: dict[str, Organisation] = field(default_factory=dict)
    keys: dict[str, ApiKey] = field(default_factory=dict)
    envelopes: dict[str, Envelope] = field(default_factory=dict)
    subjects: dict[str, DataSubject] = field(default_factory=dict)
    records: dict[str, VaultRecord] = field(default_factory=dict)  # by envelope id
    documents: dict[str, VaultedDocument] = field(default_factory=dict)
    copies: dict[str, CopyRecord] = field(default_factory=dict)
    transfers: dict[str, Transfer] = field(default_factory=dict)  # written after every organisation (its parties)
    # Copies whose object version and size come from the copies bucket, read after the replay.
    unresolved_copies: list[str] = field(default_factory=list)
    mins: dict[str, MersMin] = field(default_factory=dict)
    amendments: list[Amendment] = field(default_factory=list)
    attestations: list[PaperInAttestation] = field(default_factory=list)
    ceremonies: dict[str, Ceremony] = field(default_factory=dict)  # by envelope id
    recipients: dict[str, Recipient] = field(default_factory=dict)
    imports: list[EnvelopeImport] = field(default_factory=list)  # envelope.imported: the release each imported
    signing_keys: list[OrgSigningKey] = field(default_factory=list)
    countersignatures: list[ReceiptCountersignature] = field(default_factory=list)  # written after the transfers


def parse_time(text: Any) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def refuse(entry: Entry, message: str) -> RebuildRefused:
    return RebuildRefused(
        "Rebuild.Inconsistent",
        f"entry {entry.index} ({entry.type}) of {entry.org_id}: {message}",
        org_id=entry.org_id,
        leaf_index=entry.index,
    )


def envelope_of(rows: Rows, entry: Entry) -> Envelope:
    """The envelope the entry names, one revision on (the ETag is recounted from the events)."""
    envelope = rows.envelopes.get(entry.envelope_id or "")
    if envelope is None:
        raise refuse(entry, "names an envelope the log never created")
    envelope.revision += 1
    envelope.updated_at = entry.time
    return envelope


def subject(rows: Rows, entry: Entry, subject_id: str) -> None:
    """A committed person: the key and values are not in the log, so erased until a backup restores them (one
    already named keeps its row, and so when it was erased)."""
    rows.subjects.setdefault(
        subject_id,
        DataSubject(
            id=subject_id,
            org_id=entry.org_id,
            envelope_id=entry.envelope_id or "",
            key=None,
            clear=None,
            created_at=entry.time,
            erased_at=entry.time,
        ),
    )
