"""RFC 6901 JSON pointers, read-only: how a receipt names the part of a log entry a field is bound to."""

from __future__ import annotations

from typing import Any


class PointerError(ValueError):
    """The pointer is not RFC 6901 syntax."""


def resolve(document: Any, pointer: str) -> Any:
    """The value at ``pointer``, or None where the path does not exist (an optional field left out)."""
    if pointer == "":
        return document
    if not pointer.startswith("/"):
        raise PointerError(f"a JSON pointer starts with '/': {pointer!r}")
    value = document
    for token in pointer[1:].split("/"):
        name = token.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict):
            if name not in value:
                return None
            value = value[name]
        elif isinstance(value, list):
            if not (name.isascii() and name.isdigit()) or (len(name) > 1 and name[0] == "0") or int(name) >= len(value):
                return None
            value = value[int(name)]
        else:
            return None
    return value
