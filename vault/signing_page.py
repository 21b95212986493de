"""The signing page's own reads, beside the ceremony's JSON actions: which link it is, its pages as images, the
access check, and which origins may frame it.

Every read opens the link exactly as the ceremony's actions do (:func:`vault.ceremony.signing.open_link`), so a
forged, used, expired or closed link gets the same refusal here as there; page images, like the PDF, only after
consent (E-SIGN §101(c)(1): no record before the consumer's consent).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from compliance.errors import Unavailable
from storage.ids import utcnow
from vault.access_check import access_image, check_access_code
from vault.ceremony.context import Ceremonies
from vault.ceremony.signing import document_location, open_link
from vault.embed import is_embed_token
from vault.embed_origins import NO_FRAMING, allowed_origins, frame_ancestors
from vault.page_images import render_page


@dataclass(frozen=True)
class PageLink:
    org_id: str
    frame_ancestors: str  # the CSP directive this link's page is served with


def open_page(ceremonies: Ceremonies, token: str) -> PageLink:
    """The live link (or its refusal) and how its page may be framed: an embed token by the organisation's
    allowed origins, an emailed link never."""
    with ceremonies.custody.db.session() as session:
        link = open_link(session, ceremonies, token, utcnow())
        org_id = link.recipient.org_id
        directive = frame_ancestors(allowed_origins(session, org_id)) if is_embed_token(token) else NO_FRAMING
    return PageLink(org_id, directive)


def document_bytes(ceremonies: Ceremonies, token: str) -> bytes:
    """The document to sign, after consent, checked against the digest it was sent with."""
    key, version, sha256, _ = document_location(ceremonies, token)
    data = ceremonies.custody.staging_store.read(key, version)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise Unavailable(
            "Signing.DocumentUnavailable", "the document to sign could not be read intact", retry_after_seconds=5
        )
    return data


def page_png(ceremonies: Ceremonies, token: str, number: int) -> bytes:
    return render_page(document_bytes(ceremonies, token), number)


def access_png(ceremonies: Ceremonies, token: str) -> bytes:
    open_page(ceremonies, token)
    return access_image(token)


def check_access(ceremonies: Ceremonies, token: str, code: str) -> None:
    open_page(ceremonies, token)
    check_access_code(token, code)
