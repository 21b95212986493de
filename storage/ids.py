"""Identifiers and the clock, in one place so every record agrees on their form."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id(prefix: str) -> str:
    """``prefix_`` + 20 random base-36 characters (~103 bits): unguessable, safe in URLs and S3 keys."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(20))


def utcnow() -> datetime:
    """Now in UTC, truncated to microseconds so it round-trips through both databases."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything in the vault is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime) -> str:
    return as_utc(value).isoformat().replace("+00:00", "Z")
