"""asn1crypto's preparation of X.509 name values, remembered by value.

Every comparison of two certificate names prepares each attribute value by RFC 4518 (asn1crypto's
``NameTypeAndValue._ldap_string_prep``: six regular-expression passes, a character map, NFKC and the
prohibited-character tables), and keeps the answer on the value object. pyHanko compares the signer's issuer
and serial with every certificate of the signature a few times while grading it, each time on objects just
parsed from the upload, so nothing is kept: grading one signature prepared ~17 values, about 5 % of the vetting
of a signed 1 MiB PDF (docs/benchmarks.md). The preparation is a pure function of the string, so
:func:`install` remembers it per string, for strings up to ``MAX_CHARS`` long (a name value an outsider wrote
can be long; those are prepared each time, as before). A value the RFC refuses raises asn1crypto's own error,
which is not remembered.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from asn1crypto import x509

MAX_CHARS = 256  # longer values are prepared every time: the cache stays small whatever a certificate holds
KEPT = 4096  # distinct values remembered per process, least recently used out first

Prep = Callable[[Any, str], str]


def _remembering(original: Prep) -> Prep:
    @functools.lru_cache(maxsize=KEPT)
    def prepared(string: str) -> str:
        return original(None, string)  # ``self`` is unused by asn1crypto's implementation

    def _ldap_string_prep(self: Any, string: str) -> str:
        if len(string) > MAX_CHARS:
            return original(self, string)
        return prepared(string)

    _ldap_string_prep.original = original  # type: ignore[attr-defined]  # for the equivalence test
    return _ldap_string_prep


def install() -> None:
    """Put the remembering preparation in front of asn1crypto's own, once."""
    current = x509.NameTypeAndValue._ldap_string_prep
    if not hasattr(current, "original"):
        x509.NameTypeAndValue._ldap_string_prep = _remembering(current)
