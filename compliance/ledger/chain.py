"""Checking one envelope's hash chain from its raw entries, trusting nothing but the bytes.

Used offline by ``evault log verify`` on a proof bundle and by the integrity check on the database: each entry
must parse as the canonical JSON it claims to be, name the envelope, count up from 0 and name the SHA-256 of
the entry before it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import rfc8785

from compliance import strict_json
from compliance.ledger.log_error import CHAIN_BROKEN, MALFORMED, LogError

MAX_SAFE_INTEGER = 2**53 - 1  # RFC 8785 numbers are IEEE doubles: larger integers have no canonical form


def _refuse(text: str) -> Any:
    raise ValueError(f"no fast canonical form for {text}")


def _safe_int(text: str) -> int:
    number = int(text)
    if abs(number) > MAX_SAFE_INTEGER:
        raise ValueError("integer beyond 2^53")
    return number


def _fast_canonical(entry: bytes) -> dict[str, Any] | None:
    """The entry parsed, when json's C encoder proves it canonical; None when only RFC 8785 itself can tell.

    For ASCII text holding no floats, no NaN/Infinity and only integers within 2^53, ``json.dumps`` with sorted
    keys and no whitespace writes exactly the RFC 8785 bytes: keys are ASCII (UTF-16 and code point order
    agree), integers print alike, and both escape only ``"``, ``\\`` and control characters, the same way.
    """
    if not entry.isascii():
        return None
    try:
        value = json.loads(entry, parse_float=_refuse, parse_int=_safe_int, parse_constant=_refuse)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    try:
        fast = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # a lone surrogate, escaped
        return None
    return value if fast == entry else None


def parse_entry(entry: bytes) -> dict[str, Any]:
    """Parse an entry and insist it is in canonical form, so two encodings of one event cannot coexist."""
    fast = _fast_canonical(entry)
    if fast is not None:
        return fast
    try:
        value = strict_json.loads(entry)
        canonical = rfc8785.dumps(value)
    except (ValueError, TypeError, rfc8785.CanonicalizationError) as exc:
        raise LogError(MALFORMED, "log entry is not canonical JSON", error=str(exc)) from None
    if not isinstance(value, dict) or canonical != entry:
        raise LogError(MALFORMED, "log entry is not an RFC 8785 canonical JSON object")
    return value


def verify_chain(envelope_id: str, entries: Sequence[bytes]) -> list[dict[str, Any]]:
    """Return the parsed entries if they form an unbroken chain for ``envelope_id``; raise otherwise."""
    parsed: list[dict[str, Any]] = []
    prev: str | None = None
    for seq, entry in enumerate(entries):
        value = parse_entry(entry)
        if value.get("envelope") != envelope_id:
            raise LogError(CHAIN_BROKEN, "entry belongs to another envelope", seq=seq)
        if value.get("seq") != seq:
            raise LogError(CHAIN_BROKEN, "chain sequence has a gap or is reordered", seq=seq, found=value.get("seq"))
        if value.get("prev") != prev:
            raise LogError(CHAIN_BROKEN, "entry does not name its predecessor's hash", seq=seq)
        prev = hashlib.sha256(entry).hexdigest()
        parsed.append(value)
    return parsed
