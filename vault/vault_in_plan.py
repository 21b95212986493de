"""What a vault-in will record, settled before anything is written.

The plan is checked here, before the claim and the S3 put, so that the record step cannot fail on the
request's content: filenames are made safe for every database, the secured party is named, and the caller's
metadata is proven to encode as the canonical JSON of the ledger entry (RFC 8785 refuses integers beyond
2**53 and non-finite numbers) within a bounded size and depth.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Any

import rfc8785

from compliance.errors import Conflict, InvalidInput
from compliance.ledger.events import Actor
from storage.ids import iso
from storage.models import Envelope

SOURCES = {"signed": "esign", "upload": "paper"}
MAX_FILENAME = 200
MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_DEPTH = 16
MAX_PARTY_NAME = 200
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")


def check_claimable(envelope: Envelope, source: str, *, vaulted_ok: bool = False) -> None:
    """The flow must match the envelope's kind, and a voided or expired envelope is never vaulted."""
    if SOURCES[source] != envelope.kind:
        raise Conflict(
            "Vault.WrongFlow",
            f"vault-in-{source} is for {SOURCES[source]} envelopes; this one is {envelope.kind}",
            envelope_kind=envelope.kind,
        )
    if envelope.vault_state != "not_vaulted" and vaulted_ok:
        return
    if envelope.status in {"voided", "expired"}:
        raise Conflict(
            "Envelope.NotVaultable", f"a {envelope.status} envelope cannot be vaulted", status=envelope.status
        )


def safe_filename(name: str, position: int) -> str:
    """No path separators, NUL or control characters, at most MAX_FILENAME characters; never empty."""
    cleaned = _UNSAFE.sub("_", unicodedata.normalize("NFC", name)).strip().lstrip(".")
    return cleaned[:MAX_FILENAME] or f"document-{position}.pdf"


def _depth(value: Any, limit: int) -> int:
    """Nesting depth, stopping as soon as it passes ``limit`` (so a hostile document costs little)."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _check_metadata(metadata: dict[str, Any]) -> None:
    if _depth(metadata, MAX_METADATA_DEPTH) > MAX_METADATA_DEPTH:
        raise InvalidInput(
            "Request.InvalidMetadata", f"metadata nests deeper than {MAX_METADATA_DEPTH} levels", field="metadata"
        )
    try:
        encoded = rfc8785.dumps(metadata)
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as exc:
        raise InvalidInput(
            "Request.InvalidMetadata",
            "metadata must be JSON with integers within +-2**53 and finite numbers",
            field="metadata",
            error=str(exc),
        ) from None
    if len(encoded) > MAX_METADATA_BYTES:
        raise InvalidInput(
            "Request.InvalidMetadata", f"metadata is larger than {MAX_METADATA_BYTES} bytes", field="metadata"
        )


def _secured_party(envelope: Envelope, metadata: dict[str, Any]) -> dict[str, Any]:
    party = metadata.get("secured_party") or envelope.secured_party
    name = party.get("name") if isinstance(party, dict) else None
    if not isinstance(party, dict) or not isinstance(name, str) or not name.strip():
        raise InvalidInput(
            "Envelope.SecuredPartyRequired",
            "the secured party (assignee of record) must be named on the envelope or in the vault-in metadata",
            field="secured_party",
        )
    if len(name) > MAX_PARTY_NAME or "\x00" in name:
        raise InvalidInput("Envelope.InvalidParty", "secured_party.name is too long or has NUL", field="secured_party")
    return party


def build_plan(
    envelope: Envelope,
    actor: Actor,
    source: str,
    documents: list[dict[str, Any]],
    caller_metadata: dict[str, Any] | None,
    retain_until: datetime,
) -> dict[str, Any]:
    metadata = caller_metadata or {}
    _check_metadata(metadata)
    return {
        "source": source,
        "secured_party": _secured_party(envelope, metadata),
        "caller_metadata": metadata,
        "retain_until": iso(retain_until),
        "actor": actor.as_json(),
        "documents": [{**doc, "filename": safe_filename(doc["filename"], doc["position"])} for doc in documents],
    }
