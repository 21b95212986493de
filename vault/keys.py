"""Operating on organisations and API keys: create, list, revoke and rotate, each change logged.

Creation and authentication live in ``vault.tenancy``; this is the operator's side. A key is found by its id
(``key_...``), its whole public prefix (``lk_`` + 8 characters, as lists show it; a shorter one could name a
key the operator never looked at, so it is refused; two keys sharing a prefix are ambiguous, never a guess)
or the whole key. Revoke and rotate lock the key row (``SELECT ... FOR UPDATE``; SQLite's write transaction
holds its one write lock) and log their event in the same transaction, so a revoke racing a rotate ends in one
of two consistent states: revoked and never rotated, or rotated first and the old key revoked after.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sqlmodel import Session, col, select

from compliance.errors import Conflict, InvalidInput, NotFound
from compliance.ledger.event_catalogue import KEY_REVOKED, KEY_ROTATED
from compliance.ledger.events import Actor, append_event
from storage.ids import as_utc, iso, utcnow
from storage.models import ApiKey, Organisation
from vault.tenancy import KEY_PATTERN, PREFIX_LENGTH, create_api_key, hash_key, issue_key

_DURATION = re.compile(r"(\d{1,7})([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_LONGEST = timedelta(days=36500)
_PREFIX = re.compile(rf"lk_[A-Za-z0-9_-]{{{PREFIX_LENGTH - 3}}}")
_SHORT_PREFIX = re.compile(rf"lk_[A-Za-z0-9_-]{{1,{PREFIX_LENGTH - 4}}}")
_ID = re.compile(r"key_[A-Za-z0-9]{1,40}")


def parse_duration(text: str) -> timedelta:
    """``0``, ``90s``, ``30m``, ``24h`` or ``7d``: how long a key lives, or how long a rotated one stays valid."""
    if text.strip() == "0":
        return timedelta(0)
    match = _DURATION.fullmatch(text.strip())
    duration = timedelta(seconds=int(match[1]) * _SECONDS[match[2]]) if match else None
    if duration is None or duration > _LONGEST:
        raise InvalidInput("Key.InvalidDuration", "a duration is 0 or a number with s, m, h or d (at most 36500d)")
    return duration


def key_status(key: ApiKey) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and as_utc(key.expires_at) <= utcnow():
        return "expired"
    return "active"


def key_view(key: ApiKey) -> dict[str, Any]:
    """What a list shows of a key: never the key or its hash."""

    def when(value: Any) -> str | None:
        return iso(value) if value is not None else None

    return {
        "id": key.id,
        "prefix": key.prefix,
        "org_id": key.org_id,
        "name": key.name,
        "scopes": list(key.scopes),
        "status": key_status(key),
        "created_at": when(key.created_at),
        "expires_at": when(key.expires_at),
        "revoked_at": when(key.revoked_at),
        "rotated_from": key.rotated_from,
    }


def organisations(session: Session) -> list[Organisation]:
    return list(session.exec(select(Organisation).order_by(col(Organisation.created_at), col(Organisation.id))))


def _organisation(session: Session, org_id: str) -> Organisation:
    org = session.get(Organisation, org_id)
    if org is None:
        raise NotFound("Organisation.NotFound", "no such organisation", org_id=org_id)
    return org


def add_key(
    session: Session, org_id: str, name: str, scopes: list[str], expires_in: timedelta | None
) -> tuple[ApiKey, str]:
    """A new key of an existing organisation; the raw key is returned once and never stored."""
    _organisation(session, org_id)
    if expires_in is not None and expires_in <= timedelta(0):
        raise InvalidInput("Key.InvalidDuration", "a key must live longer than 0")
    return create_api_key(session, org_id, name, scopes, utcnow() + expires_in if expires_in else None)


def keys(session: Session, org_id: str | None = None) -> list[ApiKey]:
    query = select(ApiKey).order_by(col(ApiKey.created_at), col(ApiKey.id))
    if org_id is not None:
        _organisation(session, org_id)
        query = query.where(ApiKey.org_id == org_id)
    return list(session.exec(query))


def find_key(session: Session, ref: str, *, lock: bool = False) -> ApiKey:
    """The one key ``ref`` names (id, prefix or whole key); locked for the transaction when ``lock``."""
    query = select(ApiKey)
    if _ID.fullmatch(ref):
        query = query.where(ApiKey.id == ref)
    elif KEY_PATTERN.fullmatch(ref):
        query = query.where(ApiKey.key_hash == hash_key(ref))
    elif _PREFIX.fullmatch(ref):
        query = query.where(ApiKey.prefix == ref)
    elif _SHORT_PREFIX.fullmatch(ref):
        raise InvalidInput(
            "Key.PrefixTooShort",
            f"a key's prefix must be given whole ({PREFIX_LENGTH} characters, as `evault key list` shows it), "
            "or name the key by its id",
            ref=ref,
            length=PREFIX_LENGTH,
        )
    else:
        raise InvalidInput("Key.InvalidReference", "name a key by its id (key_...) or its prefix (lk_...)")
    if lock:
        query = query.with_for_update()
    found = list(session.exec(query.order_by(col(ApiKey.id)).limit(10)))
    if not found:
        raise NotFound("Key.NotFound", "no key matches", ref=ref)
    if len(found) > 1:
        raise Conflict(
            "Key.Ambiguous", "several keys match; name one by its id", ref=ref, key_ids=[k.id for k in found]
        )
    return found[0]


def revoke_key(session: Session, ref: str) -> ApiKey:
    key = find_key(session, ref, lock=True)
    if key.revoked_at is not None:
        raise Conflict(
            "Key.AlreadyRevoked", "this key is already revoked", key_id=key.id, revoked_at=iso(key.revoked_at)
        )
    key.revoked_at = utcnow()
    session.add(key)
    append_event(
        session,
        actor=Actor(key.org_id),
        event_type=KEY_REVOKED,
        occurred_at=key.revoked_at,
        data={"key_id": key.id, "prefix": key.prefix},
    )
    return key


def rotate_key(session: Session, ref: str, grace: timedelta) -> tuple[ApiKey, ApiKey, str]:
    """A successor with the same organisation, name and scopes; the old key stays valid for ``grace`` at most.

    The successor lives as long as the old key was meant to. Returns (old key, new key, the raw new key).
    """
    old = find_key(session, ref, lock=True)
    now = utcnow()
    if old.revoked_at is not None:
        raise Conflict("Key.AlreadyRevoked", "a revoked key cannot be rotated", key_id=old.id)
    successor = session.exec(select(ApiKey).where(ApiKey.rotated_from == old.id)).first()
    if successor is not None:
        raise Conflict("Key.AlreadyRotated", "this key was rotated already", key_id=old.id, successor=successor.id)
    if key_status(old) == "expired":
        raise Conflict("Key.Expired", "an expired key cannot be rotated; create a new one", key_id=old.id)
    lifetime = as_utc(old.expires_at) - as_utc(old.created_at) if old.expires_at else None
    new, raw = issue_key(
        session, old.org_id, old.name, list(old.scopes), now + lifetime if lifetime else None, rotated_from=old.id
    )
    old.expires_at = min(as_utc(old.expires_at), now + grace) if old.expires_at else now + grace
    session.add(old)
    append_event(
        session,
        actor=Actor(old.org_id),
        event_type=KEY_ROTATED,
        occurred_at=now,
        data={
            "key_id": new.id,
            "prefix": new.prefix,
            "name": new.name,
            "scopes": new.scopes,
            "expires_at": iso(new.expires_at) if new.expires_at else None,
            "rotated_from": {"key_id": old.id, "prefix": old.prefix, "expires_at": iso(old.expires_at)},
        },
    )
    return old, new, raw
