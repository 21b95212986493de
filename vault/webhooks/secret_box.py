"""Webhook keys sealed at rest: AES-256-GCM under a key every process of the vault holds.

A webhook's HMAC secret or Ed25519 key must be read back to sign each delivery, so it cannot be hashed as an
API key is. Stored as it was, anyone holding a copy of the database (a backup, a dump, a replica's disk) could
sign deliveries that the lender's systems accept as the vault's. Sealed, the copy is not enough: the key is in
``EVAULT_WEBHOOK_SECRETS_KEY`` (or the data directory's ``webhook-secrets-key``), never in the database, whose
``shared_secret`` table holds only its fingerprint (:func:`vault.shared_secrets.held`).

A sealed value is ``sealed1:`` and the base64 of a 96-bit nonce and the ciphertext with its tag. The AEAD's
associated data is the organisation's id, so a value copied into another organisation's row does not open. A
value without the prefix was stored before sealing (or by an older process during an upgrade): it is read as
it is, and the next start seals it (:func:`vault.webhooks.config.seal_stored_keys`).
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from compliance.errors import Unavailable

PREFIX = "sealed1:"
_INFO = b"evault webhook secrets v1"
_NONCE_BYTES = 12


class SecretBox:
    """Seals and opens one organisation's webhook keys; built once per process from the configured key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the webhook secrets key must hold at least 32 bytes")
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(key)
        self._aead = AESGCM(derived)

    def __repr__(self) -> str:
        return "SecretBox(***)"

    def seal(self, org_id: str, value: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode(), org_id.encode())
        return PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, org_id: str, stored: str) -> str:
        """The key ``stored`` holds; 503 ``Webhook.SecretUnreadable`` if it was sealed under another key or for
        another organisation, or altered."""
        if not is_sealed(stored):
            return stored
        try:
            raw = base64.b64decode(stored.removeprefix(PREFIX), validate=True)
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], org_id.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise Unavailable(
                "Webhook.SecretUnreadable",
                "the webhook's stored key does not open with this vault's EVAULT_WEBHOOK_SECRETS_KEY",
            ) from exc


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)
