"""The one JSON parser for anything signed: an object that names a key twice is refused.

Signatures here cover a canonical re-encoding (RFC 8785) of what was parsed, and Python's ``json`` keeps the
last of two equal keys while other readers keep the first. So a signed certificate, bundle or report with a
duplicate key verifies here yet reads otherwise elsewhere: one document, two meanings. Every parser of
signed or proof-carrying JSON (certificates, proof bundles, consistency proofs, ledger entries, verifier
reports) calls :func:`loads`; its :class:`DuplicateKey` is a ``ValueError``, so each caller's existing
"malformed" path reports it with its own stable code.
"""

from __future__ import annotations

import json
from typing import Any


class DuplicateKey(ValueError):
    """A JSON object names one key twice."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(f"duplicate key {key!r} in a JSON object")
            seen.add(key)
    return obj


def loads(text: str | bytes, **options: Any) -> Any:
    """``json.loads`` refusing duplicate keys at any depth (``options`` as for ``json.loads``)."""
    return json.loads(text, object_pairs_hook=_unique, **options)
