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

from compliance.errors import Conflict, InvalidInput
from compliance.ledger.events import Actor
from storage.ids import iso
from storage.models import Envelope
from vault.field_limits import MAX_METADATA_BYTES, MAX_METADATA_DEPTH, check_json, check_party

SOURCES = {"signed": "esign", "upload": "paper"}
MAX_FILENAME = 200
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
    if envelope.status == "sent":
        raise Conflict(
            "Ceremony.InProgress",
            "this envelope is out for signing: it is vaulted by itself when the last signer signs",
            status=envelope.status,
        )
    if envelope.status in {"voided", "expired", "declined"}:
        raise Conflict(
            "Envelope.NotVaultable", f"a {envelope.status} envelope cannot be vaulted", status=envelope.status
        )


def safe_filename(name: str, position: int) -> str:
    """No path separators, NUL or control characters, at most MAX_FILENAME characters; never empty."""
    cleaned = _UNSAFE.sub("_", unicodedata.normalize("NFC", name)).strip().lstrip(".")
    return cleaned[:MAX_FILENAME] or f"document-{position}.pdf"


def _check_metadata(metadata: dict[str, Any]) -> None:
    try:
        check_json(metadata, "metadata", max_depth=MAX_METADATA_DEPTH, max_bytes=MAX_METADATA_BYTES)
    except InvalidInput as exc:
        # The stable vault-in code stays Request.InvalidMetadata; what exactly is wrong travels in the details.
        raise InvalidInput("Request.InvalidMetadata", exc.message, **{**exc.details, "reason": exc.code}) from None


def _secured_party(envelope: Envelope, metadata: dict[str, Any]) -> dict[str, Any]:
    party = metadata.get("secured_party") or envelope.secured_party
    if party is None:  # a well-formed request; the envelope's state (no party named at creation) is what is wrong
        raise Conflict(
            "Vault.SecuredPartyUnnamed",
            "neither the envelope nor the vault-in metadata names the secured party (assignee of record)",
            field="secured_party",
        )
    name = party.get("name") if isinstance(party, dict) else None
    if not isinstance(party, dict) or not isinstance(name, str) or not name.strip():
        raise InvalidInput(
            "Envelope.SecuredPartyRequired",
            "the secured party (assignee of record) must be named on the envelope or in the vault-in metadata",
            field="secured_party",
        )
    try:
        check_party(party, "secured_party")
    except InvalidInput as exc:
        raise InvalidInput("Envelope.InvalidParty", exc.message, **{**exc.details, "reason": exc.code}) from None
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
