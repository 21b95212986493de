"""Signing links: the token in ``/sign/<token>`` is the only credential a recipient holds.

``<recipient id>.<base64url HMAC-SHA256(secret, "evault-sign/v1" | recipient id | nonce)>``: 256 bits from the
server's secret (``EVAULT_SIGNING_LINK_SECRET``, or the file made into the data directory). The database holds
only the nonce, so whoever reads it still cannot make a link, and the same link is served every time it is
asked for. Whether a link still works (its recipient, its envelope, its expiry) is decided by
:mod:`vault.ceremony.signing` from the rows, never from the token.
"""

from __future__ import annotations

import base64
import hmac
import os
import re
import secrets
from pathlib import Path

from storage.models import Recipient

_DOMAIN = b"evault-sign/v1"
TOKEN = re.compile(r"(rcp_[a-z0-9]{20})\.([A-Za-z0-9_-]{43})")
SECRET_BYTES = 32


def _mac(secret: bytes, recipient_id: str, nonce: str) -> str:
    digest = hmac.new(secret, b"|".join([_DOMAIN, recipient_id.encode(), nonce.encode()]), "sha256").digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def link_token(secret: bytes, recipient: Recipient) -> str:
    return f"{recipient.id}.{_mac(secret, recipient.id, recipient.link_nonce)}"


def token_recipient_id(token: str) -> str | None:
    """The recipient a token claims to be for (not yet checked), or None for a malformed token."""
    found = TOKEN.fullmatch(token)
    return found.group(1) if found else None


def token_matches(secret: bytes, recipient: Recipient, token: str) -> bool:
    return hmac.compare_digest(link_token(secret, recipient).encode(), token.encode())


def load_or_create_secret(path: Path) -> bytes:
    """The data directory's link secret, made once (0600) on the embedded default."""
    if path.exists():
        secret = path.read_bytes()
        if len(secret) < SECRET_BYTES:
            raise ValueError(f"{path} holds fewer than {SECRET_BYTES} bytes")
        return secret
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(SECRET_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret)
    return secret
