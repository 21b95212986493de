"""Countersignatures: the parties' own Ed25519 signatures on a transfer receipt's statement.

A receipt is re-issued on request (a new ``issued_at``, perhaps a newer checkpoint), so a party does not sign a
receipt's bytes but its **statement**: the RFC 8785 encoding of ``{"format": "evault-receipt-statement/v1",
"kind", "envelope_id", "fields"}``, which every issue of the receipt shares because its fields are bound to the
log. The vault carries each countersignature in the receipt (``countersignatures``: the organisation, its
registered key's id and PEM, the signature) under its own signature; the offline check verifies each against
the statement it recomputes from the receipt, so anyone holding the receipt sees that both parties signed what
it says (docs/receipts.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from compliance.certificates.issuance import key_id_of
from compliance.errors import InvalidInput

STATEMENT_FORMAT = "evault-receipt-statement/v1"
BAD_COUNTERSIGNATURE = "Receipt.BadCountersignature"


def statement(kind: str, envelope_id: str, fields: Mapping[str, Any]) -> bytes:
    """The bytes a party countersigns: what the receipt states, without when or on which checkpoint it was issued."""
    return rfc8785.dumps({"format": STATEMENT_FORMAT, "kind": kind, "envelope_id": envelope_id, "fields": dict(fields)})


def statement_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ed25519_key(pem: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM, or ``ValueError``."""
    key = load_pem_public_key(pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def signature_holds(pem: str, value: str, data: bytes) -> bool:
    try:
        ed25519_key(pem).verify(base64.b64decode(value, validate=True), data)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def check_countersignatures(body: dict[str, Any], parties: set[str]) -> list[str]:
    """The organisations whose countersignature over the receipt's statement verifies; any that does not, or that
    names no party of the receipt, or a key other than its PEM, raises ``Receipt.BadCountersignature``."""
    items = body.get("countersignatures", [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InvalidInput(BAD_COUNTERSIGNATURE, "countersignatures must be a list of objects")
    data = statement(str(body.get("kind")), str(body.get("envelope_id")), body.get("fields") or {})
    signed: list[str] = []
    for item in items:
        org, pem, value = item.get("org_id"), item.get("public_key"), item.get("value")
        if not (isinstance(org, str) and isinstance(pem, str) and isinstance(value, str)) or org in signed:
            raise InvalidInput(BAD_COUNTERSIGNATURE, "a countersignature is malformed or repeats its party")
        if org not in parties or item.get("alg") != "Ed25519":
            raise InvalidInput(BAD_COUNTERSIGNATURE, "a countersignature by no party of the receipt", org_id=org)
        try:
            named = key_id_of(ed25519_key(pem))
        except ValueError:
            raise InvalidInput(BAD_COUNTERSIGNATURE, "a countersignature's key is not Ed25519", org_id=org) from None
        if named != item.get("key_id") or not signature_holds(pem, value, data):
            raise InvalidInput(
                BAD_COUNTERSIGNATURE, "a countersignature does not verify over the receipt's statement", org_id=org
            )
        signed.append(org)
    return signed
