"""PDF names written by pypdf without a Python call per character.

pypdf writes a name (``/Type``, ``/Contents``, ``/EvaultOriginal``) through ``NameObject.renumber``, which
builds its bytes one character at a time, with a dictionary look-up and an exception handler for each, to
escape delimiters, whitespace, ``#`` and anything outside printable ASCII as ``#XX``. Stamping a copy writes
every name of every page: about 15 % of stamping a 300-page PDF and 0.5 ms of a 1 MiB one (docs/benchmarks.md).
Almost every name has nothing to escape, and is then its characters as ASCII. :func:`install` puts that check in
front of pypdf's own method, which still writes every other name, so its answers and errors stay pypdf's.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pypdf.generic import NameObject

# What pypdf escapes after the leading "/": outside "!" to "~", and its delimiters and "#" (renumber_table).
_ESCAPED = re.compile(r"[^!-~]|[#()<>\[\]{}/%]")

Renumber = Callable[[NameObject], bytes]


def _plain_first(original: Renumber) -> Renumber:
    def renumber(self: NameObject) -> bytes:
        if self[:1] == "/" and _ESCAPED.search(self, 1) is None:
            return self.encode("ascii")
        return original(self)

    renumber.original = original  # type: ignore[attr-defined]  # for the equivalence test
    return renumber


def install() -> None:
    """Put the plain-name check in front of pypdf's ``NameObject.renumber``, once."""
    current = NameObject.renumber
    if not hasattr(current, "original"):
        NameObject.renumber = _plain_first(current)  # type: ignore[method-assign,assignment]
