"""Standard Webhooks keys and signatures: ``whsec_`` (HMAC-SHA256, ``v1``) and ``whsk_``/``whpk_`` (Ed25519, ``v1a``).

The signed content is ``webhook-id + "." + webhook-timestamp + "." + body``, exactly as sent; each signature is
``<version>,<base64>`` and several are space-delimited (a rotation sends the old key's beside the new one's).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from compliance.errors import InvalidInput

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SIGNING_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"
SECRET_BYTES = 32  # the spec takes 24 to 64
SCHEMES = ("v1", "v1a")


def new_key(scheme: str) -> str:
    """A fresh ``whsec_`` secret (``v1``) or ``whsk_`` Ed25519 private key (``v1a``)."""
    if scheme == "v1a":
        raw = Ed25519PrivateKey.generate().private_bytes_raw()
        return SIGNING_KEY_PREFIX + base64.b64encode(raw).decode()
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def scheme_of(key: str) -> str:
    return "v1a" if key.startswith(SIGNING_KEY_PREFIX) else "v1"


def hmac_key(secret: str) -> bytes:
    """The HMAC key: the base64-decoded bytes after ``whsec_``, 24 to 64 of them, else 400."""
    raw = secret.removeprefix(SECRET_PREFIX) if secret.startswith(SECRET_PREFIX) else None
    try:
        key = base64.b64decode(raw or "", validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not 24 <= len(key) <= 64:
        raise InvalidInput(
            "Webhook.InvalidSecret", "a secret is whsec_ followed by base64 of 24 to 64 random bytes", field="secret"
        )
    return key


def _ed25519(signing_key: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(signing_key.removeprefix(SIGNING_KEY_PREFIX)))


def public_key(signing_key: str) -> str:
    """The ``whpk_`` key receivers verify ``v1a`` signatures with."""
    return PUBLIC_KEY_PREFIX + base64.b64encode(_ed25519(signing_key).public_key().public_bytes_raw()).decode()


def sign(keys: list[str], webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per key in force, newest first, space-delimited."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    signatures = []
    for key in keys:
        if scheme_of(key) == "v1a":
            signatures.append("v1a," + base64.b64encode(_ed25519(key).sign(content)).decode())
        else:
            digest = hmac.new(hmac_key(key), content, hashlib.sha256).digest()
            signatures.append("v1," + base64.b64encode(digest).decode())
    return " ".join(signatures)
