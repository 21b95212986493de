"""The audit trail of one envelope: every event, who caused it, and its place in the chain and the log.

The JSON form carries each entry's exact bytes (base64), so whoever holds it can re-hash them and check them
against the chain, a proof bundle or a certificate. The CSV form is for people and as checkable: one row per event
with the envelope id, chain seq, leaf index, key id and entry hash, the data as compact JSON, and the entry's
exact bytes (base64), so each row re-hashes to its ``entry_hash`` and names its predecessor's in ``prev``.
Cells that a spreadsheet would run as a formula are quoted with a leading apostrophe (base64 of a JSON entry
starts ``eyJ``, hex never with a sign, so the checkable columns are never quoted).
The trail holds what the log holds, and the log keeps no client addresses or user agents (docs/certificates.md). People
named as parties appear in the log as commitments only; ``personal_data`` shows the values behind them, by
subject id, while they still exist (``compliance.ledger.personal_data``).
"""

from __future__ import annotations

import base64
import csv
import io
import json
from typing import Any

from compliance.conditions.evidence import as_dict
from compliance.errors import NotFound
from compliance.ledger.chain import parse_entry
from compliance.ledger.event_catalogue import declared
from compliance.ledger.events import envelope_events
from compliance.ledger.log_error import LogError
from compliance.ledger.personal_data import reveal
from compliance.sources import Sources
from storage.models import Envelope, Event

FORMAT = "evault-audit-trail/v1"
CSV_COLUMNS = (
    "envelope_id",
    "seq",
    "leaf_index",
    "time",
    "type",
    "actor_org",
    "actor_key_id",
    "actor_key_prefix",
    "data",
    "prev",
    "entry_hash",
    "entry",
)


def _row(event: Event) -> dict[str, Any]:
    try:
        value = parse_entry(event.entry)
    except LogError:
        value = {}  # an edited entry still appears, with its bytes; its hash gives it away
    actor = as_dict(value.get("actor"))
    return {
        "seq": event.chain_seq,
        "leaf_index": event.leaf_index,
        "time": value.get("time"),
        "type": event.event_type,
        "actor": {
            "org_id": actor.get("org_id"),
            "key_id": actor.get("key_id"),
            "key_prefix": actor.get("key_prefix"),
            "source": actor.get("source"),
        },
        "data": value.get("data"),
        "prev": value.get("prev"),
        "entry_hash": event.entry_hash,
        "entry": base64.b64encode(event.entry).decode(),
    }


def audit_trail(sources: Sources, org_id: str, envelope_id: str) -> dict[str, Any]:
    with sources.db.read_session() as session:
        envelope = session.get(Envelope, envelope_id)
        if envelope is None or envelope.org_id != org_id:
            raise NotFound("Envelope.NotFound", "no such envelope", envelope_id=envelope_id)
        rows = [_row(e) for e in envelope_events(session, envelope_id)]
        people = reveal(session, [p for row in rows for p in _committed_parties(row)])
    sources.deadline.check()
    return {
        "format": FORMAT,
        "envelope_id": envelope_id,
        "log_origin": sources.origin(org_id),
        "events": rows,
        "personal_data": {subject: shown.as_json() for subject, shown in people.items()},
    }


def _committed_parties(row: dict[str, Any]) -> list[Any]:
    """The personal-data commitments in one row, where the catalogue says its event keeps them."""
    event_type, data = declared(row["type"]), row["data"]
    if event_type is None or not isinstance(data, dict):
        return []
    lists = [data.get(key) for key in event_type.commitments]
    return [item for items in lists if isinstance(items, list) for item in items]


def _cell(value: Any) -> str:
    text = "" if value is None else value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def as_csv(trail: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in trail["events"]:
        actor = row["actor"]
        writer.writerow(
            _cell(v)
            for v in (
                trail.get("envelope_id"),
                row["seq"],
                row["leaf_index"],
                row["time"],
                row["type"],
                actor.get("org_id"),
                actor.get("key_id"),
                actor.get("key_prefix") or actor.get("source"),
                row["data"],
                row["prev"],
                row["entry_hash"],
                row.get("entry"),
            )
        )
    return out.getvalue()
