"""Organisations and API keys: who is calling, for which organisation, with which scopes.

A key is ``lk_`` + 43 URL-safe random characters, shown once and stored only as its SHA-256; the first 11
characters (``lk_`` + 8) are its public prefix for lists and logs. Each failure has its own stable code so an
integrator can tell a typo from a revoked key.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam
from sqlmodel import Session, select

from compliance.errors import Forbidden, InvalidInput, Unauthenticated
from compliance.ledger.event_catalogue import KEY_CREATED, ORG_CREATED
from compliance.ledger.events import Actor, append_event
from storage.db import one_at_a_time
from storage.ids import as_utc, iso, new_id, utcnow
from storage.models import ApiKey, Organisation

SCOPES = (
    "envelopes:read",
    "envelopes:write",
    "vault:write",
    "vault:read",
    "vault:release",
    "compliance:read",
    "esign:write",
    "retention:write",
)
KEY_PATTERN = re.compile(r"lk_[A-Za-z0-9_-]{40,100}")
PREFIX_LENGTH = 11


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. Everything it may see is scoped to ``org_id``."""

    org_id: str
    key_id: str
    key_prefix: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden("Auth.InsufficientScope", f"this key lacks the scope {scope}", required_scope=scope)

    def actor(self) -> Actor:
        """The caller as the ledger records it: organisation and key, nothing about the client."""
        return Actor(self.org_id, self.key_id, self.key_prefix)


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _checked_name(name: str, code: str) -> str:
    name = name.strip()
    if not name or len(name) > 200 or not name.isprintable():
        raise InvalidInput(code, "a name is 1 to 200 printable characters", name=name[:200])
    return name


def create_organisation(session: Session, name: str) -> Organisation:
    name = _checked_name(name, "Organisation.InvalidName")
    org = Organisation(id=new_id("org"), name=name, created_at=utcnow())
    session.add(org)
    session.flush()
    append_event(
        session,
        actor=Actor(org.id),
        event_type=ORG_CREATED,
        occurred_at=org.created_at,
        data={"name": name},
    )
    return org


def issue_key(
    session: Session,
    org_id: str,
    name: str,
    scopes: list[str],
    expires_at: datetime | None = None,
    rotated_from: str | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key (its hash) without logging it; callers append the event that says why it exists."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise InvalidInput(
            "Key.InvalidScopes",
            "scopes must be a non-empty subset of the known scopes",
            unknown=unknown,
            known=list(SCOPES),
        )
    raw = "lk_" + secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_id("key"),
        org_id=org_id,
        prefix=raw[:PREFIX_LENGTH],
        key_hash=hash_key(raw),
        name=_checked_name(name, "Key.InvalidName"),
        scopes=sorted(set(scopes)),
        created_at=utcnow(),
        expires_at=expires_at,
        rotated_from=rotated_from,
    )
    session.add(key)
    session.flush()
    return key, raw


def create_api_key(
    session: Session, org_id: str, name: str, scopes: list[str], expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """Return the stored key and the raw key, which is never stored or shown again."""
    key, raw = issue_key(session, org_id, name, scopes, expires_at)
    append_event(
        session,
        actor=Actor(org_id),
        event_type=KEY_CREATED,
        occurred_at=key.created_at,
        data={
            "key_id": key.id,
            "prefix": key.prefix,
            "name": key.name,
            "scopes": key.scopes,
            "expires_at": iso(expires_at) if expires_at else None,
        },
    )
    return key, raw


_KEY_BY_HASH = select(ApiKey).where(ApiKey.key_hash == bindparam("key_hash"))  # built once: every request runs it


def authenticate(session: Session, raw: str | None) -> Principal:
    if not raw:
        raise Unauthenticated("Auth.MissingKey", "send your API key in the X-API-Key header")
    if not KEY_PATTERN.fullmatch(raw):
        raise Unauthenticated("Auth.MalformedKey", "an API key is lk_ followed by at least 40 URL-safe characters")
    key = session.exec(_KEY_BY_HASH, params={"key_hash": hash_key(raw)}).first()
    if key is None:
        raise Unauthenticated("Auth.UnknownKey", "this API key is not known")
    if key.revoked_at is not None:
        raise Unauthenticated("Auth.KeyRevoked", "this API key has been revoked", key_prefix=key.prefix)
    if key.expires_at is not None and as_utc(key.expires_at) <= utcnow():
        raise Unauthenticated("Auth.KeyExpired", "this API key has expired", key_prefix=key.prefix)
    return Principal(key.org_id, key.id, key.prefix, frozenset(key.scopes))


def bootstrap(session: Session) -> tuple[Organisation, str] | None:
    """On first start, create a first organisation and an all-scopes key; later starts do nothing. Replicas
    starting together on an empty database take turns, so only the first makes one."""
    one_at_a_time(session.connection(), "bootstrap")
    if session.exec(select(Organisation).limit(1)).first() is not None:
        return None
    org = create_organisation(session, "First organisation")
    _, raw = create_api_key(session, org.id, "bootstrap key", list(SCOPES))
    return org, raw
