"""Identifiers and the clock, in one place so every record agrees on their form."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_BASE = len(_ALPHABET)
_DIGITS = 20
_SPACE = _BASE**_DIGITS


def new_id(prefix: str) -> str:
    """``prefix_`` + 20 random base-36 characters (~103 bits): unguessable, safe in URLs and S3 keys.

    One draw of the whole number, written in base 36: a choice per character read the system's randomness 20
    times (five ids per vault-in); this is the same uniform distribution in one read."""
    number = secrets.randbelow(_SPACE)
    digits = []
    for _ in range(_DIGITS):
        number, digit = divmod(number, _BASE)
        digits.append(_ALPHABET[digit])
    return f"{prefix}_" + "".join(digits)


def utcnow() -> datetime:
    """Now in UTC, truncated to microseconds so it round-trips through both databases."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything in the vault is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime) -> str:
    return as_utc(value).isoformat().replace("+00:00", "Z")
