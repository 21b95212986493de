"""Embed tokens: a short-lived URL to a recipient's signing page, for the partner's own site to frame.

``POST /embed/token`` mints ``<recipient id>.e<expiry>.<nonce>.<mac>`` where the MAC is HMAC-SHA256 under the
signing-link secret of ("evault-embed/v1", recipient id, the recipient's link nonce, expiry, nonce). The token
is a path segment of the same signing URL (``.../sign/<token>``) and the same actions accept it
(:func:`vault.ceremony.signing.open_link` asks :func:`embed_token_end`), with the same checks of the
recipient and the envelope, plus its own expiry. Nothing is stored: a token names its recipient, its end and
128 random bits, and only the server's secret can make one. What marks it as embedded is its form, which
decides the page's ``frame-ancestors`` (the organisation's allowed origins; an emailed link is never framed).
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from compliance.errors import Conflict, Gone, NotFound
from storage.ids import as_utc, iso, utcnow
from storage.models import Ceremony, Recipient
from vault.ceremony.context import Ceremonies
from vault.envelopes import get_envelope

_DOMAIN = b"evault-embed/v1"
EMBED_TOKEN = re.compile(r"(rcp_[a-z0-9]{20})\.e([0-9]{10,12})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _mac(secret: bytes, recipient: Recipient, expires: int, nonce: str) -> str:
    message = b"|".join(
        [_DOMAIN, recipient.id.encode(), recipient.link_nonce.encode(), str(expires).encode(), nonce.encode()]
    )
    return _b64(hmac.new(secret, message, "sha256").digest())


def embed_token(secret: bytes, recipient: Recipient, expires_at: datetime) -> str:
    expires, nonce = int(expires_at.timestamp()), _b64(secrets.token_bytes(16))
    return f"{recipient.id}.e{expires}.{nonce}.{_mac(secret, recipient, expires, nonce)}"


def is_embed_token(token: str) -> bool:
    """Whether the token has an embed token's form (not whether it is genuine)."""
    return EMBED_TOKEN.fullmatch(token) is not None


def embed_recipient_id(token: str) -> str | None:
    found = EMBED_TOKEN.fullmatch(token)
    return found.group(1) if found else None


def embed_token_end(secret: bytes, recipient: Recipient, token: str) -> datetime | None:
    """When the token ends, if the server made it for this recipient (and their link's nonce); None if forged."""
    found = EMBED_TOKEN.fullmatch(token)
    if found is None or found.group(1) != recipient.id:
        return None
    expires, nonce, mac = int(found.group(2)), found.group(3), found.group(4)
    if not hmac.compare_digest(_mac(secret, recipient, expires, nonce).encode(), mac.encode()):
        return None
    return datetime.fromtimestamp(expires, tz=UTC)


def mint_embed_token(ceremonies: Ceremonies, org_id: str, envelope_id: str, recipient_id: str) -> dict[str, Any]:
    """A token and URL for one recipient of an envelope out for signing; it ends after
    ``EVAULT_EMBED_TOKEN_TTL_SECONDS`` or with the recipient's link, whichever comes first."""
    now = utcnow()
    with ceremonies.custody.db.read_session() as session:
        envelope = get_envelope(session, org_id, envelope_id)
        if envelope.kind != "esign":
            raise Conflict("Ceremony.NotEsign", "only an e-sign envelope has a signing page", kind=envelope.kind)
        recipient = session.get(Recipient, recipient_id)
        if recipient is None or recipient.org_id != org_id or recipient.envelope_id != envelope.id:
            raise NotFound("Recipient.NotFound", "no such recipient of this envelope", recipient_id=recipient_id)
        ceremony = session.get(Ceremony, envelope.id)
        if ceremony is None or ceremony.sent_at is None:
            raise Conflict("Ceremony.NotSent", "an embed token exists once the envelope is sent")
        if recipient.status in ("signed", "declined"):
            raise Conflict(
                "Signing.LinkUsed", f"this recipient's link was used: they {recipient.status}", status=recipient.status
            )
        if envelope.status != "sent":
            raise Gone("Signing.EnvelopeClosed", f"the envelope is {envelope.status}", status=envelope.status)
        link_ends = ceremonies.links_expire(envelope, ceremony)
        if link_ends is not None and as_utc(link_ends) <= now:
            raise Gone("Signing.LinkExpired", "this recipient's signing link expired", expired_at=iso(link_ends))
        ends = now + timedelta(seconds=ceremonies.settings.embed_ttl_seconds)
        ends = min(ends, as_utc(link_ends)) if link_ends is not None else ends
        ends = datetime.fromtimestamp(int(ends.timestamp()), tz=UTC)  # the token holds whole seconds
        token = embed_token(ceremonies.link_secret, recipient, ends)
    return {"token": token, "url": ceremonies.link_url(token), "expires_at": iso(ends)}
