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

from compliance.ledger.errors import CHAIN_BROKEN, MALFORMED, LogError


def parse_entry(entry: bytes) -> dict[str, Any]:
    """Parse an entry and insist it is in canonical form, so two encodings of one event cannot coexist."""
    try:
        value = json.loads(entry)
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
