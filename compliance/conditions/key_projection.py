"""API keys as their organisation's log states them: issued with their scopes, rotated, revoked.

Condition 4 asks whether each event's key held the event's scope; the scopes it reads are the key rows'. Those
rows are re-derived here from the log's ``key.created``, ``key.rotated`` and ``key.revoked`` entries, so a scope
granted in SQL is ``Key.Edited`` and a key the log never issued is ``Key.Unlogged`` (in the live check's
condition 6 and in the verifier's rows pass), not a quiet authorisation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlmodel import Session, col, select

from compliance.conditions.projection import Mismatch, changed_pairs
from compliance.ledger.chain import parse_entry
from compliance.ledger.event_catalogue import KEY_CREATED, KEY_REVOKED, KEY_ROTATED
from compliance.ledger.log_error import LogError
from storage.ids import iso
from storage.models import ApiKey, Event

KEY_EVENTS = (KEY_CREATED.name, KEY_ROTATED.name, KEY_REVOKED.name)


def fold_keys(values: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each key as its organisation's log states it (scopes never change after issue): key id -> its facts."""
    keys: dict[str, dict[str, Any]] = {}
    for value in values:
        kind, data = value.get("type"), value.get("data")
        data = data if isinstance(data, dict) else {}
        if kind in (KEY_CREATED.name, KEY_ROTATED.name):
            keys[str(data.get("key_id"))] = {
                "org_id": value.get("log"),
                "prefix": data.get("prefix"),
                "scopes": data.get("scopes"),
                "expires_at": data.get("expires_at"),
                "revoked_at": None,
                **({"created_at": value.get("time")} if kind == KEY_CREATED.name else {}),
            }
        rotated = data.get("rotated_from") if kind == KEY_ROTATED.name else None
        if isinstance(rotated, dict) and str(rotated.get("key_id")) in keys:
            keys[str(rotated.get("key_id"))]["expires_at"] = rotated.get("expires_at")
        if kind == KEY_REVOKED.name and str(data.get("key_id")) in keys:
            keys[str(data.get("key_id"))]["revoked_at"] = value.get("time")
    return keys


def compare_keys(ledger: dict[str, dict[str, Any]], rows: Iterable[ApiKey]) -> list[Mismatch]:
    """Key rows against the log: a key the log never issued, or whose scopes, dates or owner were edited."""
    found = []
    for key in rows:
        where = {"org_id": key.org_id, "key_id": key.id}
        logged = ledger.get(key.id)
        if logged is None:
            found.append(Mismatch("Key.Unlogged", "a key row its organisation's log never issued", where))
            continue
        row = {
            "org_id": key.org_id,
            "prefix": key.prefix,
            "scopes": sorted(key.scopes),
            "expires_at": iso(key.expires_at) if key.expires_at else None,
            "revoked_at": iso(key.revoked_at) if key.revoked_at else None,
        }
        if "created_at" in logged:
            row["created_at"] = iso(key.created_at)
        changed = changed_pairs({name: (value, logged.get(name)) for name, value in row.items()})
        if changed:
            found.append(
                Mismatch("Key.Edited", "the key row differs from its log entries", where | {"changed": changed})
            )
    return found


def key_ledger(session: Session, org_id: str) -> dict[str, dict[str, Any]]:
    """The organisation's keys as its log states them (an entry that does not parse is the log audit's)."""
    stmt = (
        select(Event.entry)
        .where(Event.org_id == org_id, col(Event.envelope_id).is_(None), col(Event.event_type).in_(KEY_EVENTS))
        .order_by(col(Event.leaf_index))
    )
    values = []
    for entry in session.exec(stmt.execution_options(yield_per=1000)):
        try:
            values.append(parse_entry(entry))
        except LogError:
            continue
    return fold_keys(values)
