"""Where a webhook may point: public addresses over https, or the operator's allowed networks.

A URL's host is resolved and *every* address it resolves to is checked, at configuration and again before each
attempt (DNS can change). Loopback, private, link-local (cloud metadata lives there), shared, reserved,
multicast and unspecified addresses are refused unless they fall in ``EVAULT_WEBHOOK_ALLOW_NETWORKS``; so are
IPv6 forms that embed such an IPv4 address. The sender then connects to the address it checked, never to the
name again, so a second answer from DNS (rebinding) is never used. Only ``https`` leaves the allowed networks.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from compliance.errors import InvalidInput

MAX_URL = 2048
IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list[tuple[Any, ...]]]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


@dataclass(frozen=True)
class Target:
    """A checked destination: connect to ``address``, name ``host`` (Host header, TLS server name)."""

    scheme: str
    host: str
    port: int
    path: str
    address: str


def _invalid(message: str) -> InvalidInput:
    return InvalidInput("Webhook.InvalidUrl", message, field="url")


def _embedded_v4(ip: IP) -> ipaddress.IPv4Address | None:
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return ip.teredo[1] if ip.teredo is not None else None


def is_public(ip: IP) -> bool:
    """Globally routable unicast, and so is any IPv4 address it embeds."""
    inner = _embedded_v4(ip)
    if inner is not None and not is_public(inner):
        return False
    return ip.is_global and not ip.is_multicast and not ip.is_unspecified


def parse(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query) of a well-formed http(s) URL without credentials or fragment."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL or not url.isprintable() or " " in url:
        raise _invalid(f"url must be an absolute http(s) URL of at most {MAX_URL} printable characters")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise _invalid("url has an invalid port") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise _invalid("url must be an absolute http(s) URL")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise _invalid("url must not carry credentials or a fragment")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path


def resolve(url: str, allow_networks: tuple[str, ...], resolver: Resolver = socket.getaddrinfo) -> Target:
    """Check ``url`` and every address its host has now; the target to connect to, or a 400."""
    scheme, host, port, path = parse(url)
    allowed = [ipaddress.ip_network(cidr) for cidr in allow_networks]
    unresolvable = InvalidInput(
        "Webhook.UnresolvableHost", f"the host {host!r} does not resolve", field="url", host=host
    )
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = resolver(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise unresolvable from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    if not addresses:
        raise unresolvable
    inside = [any(ip in net for net in allowed) for ip in addresses]
    for ip, ok in zip(addresses, inside, strict=True):
        if not ok and not is_public(ip):
            raise InvalidInput(
                "Webhook.UnsafeTarget",
                f"the host {host!r} resolves to {ip}, which is not a public address",
                field="url",
                address=str(ip),
            )
    if scheme != "https" and not all(inside):
        raise InvalidInput(
            "Webhook.HttpsRequired", "a webhook outside the allowed networks must use https", field="url"
        )
    return Target(scheme, host, port, path, str(addresses[0]))
