"""The origins allowed to frame an organisation's embedded signing page, and the CSP that follows from them.

An origin is ``scheme://host[:port]`` and nothing else: no path, query, fragment, credentials or wildcard, so
that what the operator sets cannot widen or break the ``frame-ancestors`` directive it is written into.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from sqlmodel import Session, col, delete, select

from compliance.errors import InvalidInput, NotFound
from storage.ids import utcnow
from storage.models import EmbedOrigin, Organisation

MAX_ORIGINS = 20
MAX_ORIGIN_LENGTH = 300
NO_FRAMING = "frame-ancestors 'none'"
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_SHAPE = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#@\s]+")


def _bad(origin: str, why: str) -> InvalidInput:
    return InvalidInput("Embed.InvalidOrigin", f"{origin!r} is not an origin: {why}", origin=origin)


def _host_ok(host: str) -> bool:
    if host.startswith("[") and host.endswith("]"):
        try:
            return ipaddress.ip_address(host[1:-1]).version == 6
        except ValueError:
            return False
    labels = host.split(".")
    return len(host) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def normalise_origin(raw: str) -> str:
    """``raw`` as a canonical origin (lower case, no default port), or ``Embed.InvalidOrigin``."""
    text = raw.strip().lower()
    if len(text) > MAX_ORIGIN_LENGTH or not _SHAPE.fullmatch(text):
        raise _bad(raw, "give scheme://host[:port] with nothing after it")
    try:
        parts = urlsplit(text)
    except ValueError:  # a bracketed host that is no IPv6 address
        raise _bad(raw, "the host is a DNS name or an IP address") from None
    if parts.scheme not in ("https", "http"):
        raise _bad(raw, "the scheme is https or http")
    host = parts.netloc
    port: int | None = None
    head, sep, tail = host.rpartition(":")
    if sep and not tail.endswith("]"):
        if not re.fullmatch(r"[0-9]{1,5}", tail) or not 0 < int(tail) < 65536:  # str.isdigit() takes "²" and "٣"
            raise _bad(raw, "the port is 1-65535")
        host, port = head, int(tail)
    if not _host_ok(host):
        raise _bad(raw, "the host is a DNS name or an IP address, without wildcards")
    default = {"https": 443, "http": 80}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def allowed_origins(session: Session, org_id: str) -> list[str]:
    rows = session.exec(select(EmbedOrigin).where(col(EmbedOrigin.org_id) == org_id).order_by(col(EmbedOrigin.origin)))
    return [row.origin for row in rows]


def set_allowed_origins(session: Session, org_id: str, raw: list[str]) -> list[str]:
    """Replace the organisation's origins with ``raw`` (an empty list clears them); all are checked first."""
    if session.get(Organisation, org_id) is None:
        raise NotFound("Organisation.NotFound", "no such organisation", org_id=org_id)
    origins = sorted({normalise_origin(r) for r in raw})
    if len(origins) > MAX_ORIGINS:
        raise InvalidInput("Request.TooMany", f"at most {MAX_ORIGINS} origins", field="origins", limit=MAX_ORIGINS)
    session.exec(delete(EmbedOrigin).where(col(EmbedOrigin.org_id) == org_id))
    now = utcnow()
    for origin in origins:
        session.add(EmbedOrigin(org_id=org_id, origin=origin, created_at=now))
    return origins


def frame_ancestors(origins: list[str]) -> str:
    """The CSP directive for the embedded page: the allowed origins, or ``'none'`` when there are none."""
    return f"frame-ancestors {' '.join(origins)}" if origins else NO_FRAMING
