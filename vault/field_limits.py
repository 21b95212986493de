"""What a request's fields may hold, checked before anything is written, the same for SQLite and PostgreSQL.

Whatever a caller sends ends up in a database row and, for good, in a ledger entry encoded as RFC 8785 JSON.
So every value is bounded here, once, for envelope creation, vault-in and vault-out alike: string lengths,
list counts, nesting depth, integers within +-2**53 (what RFC 8785 and every JSON reader agree on), the
canonical encoding's size, and no NUL, control or lone surrogate characters (PostgreSQL cannot store NUL or a
lone surrogate). Invisible characters that change how text reads are refused too, since a ledger entry, a
certificate or a filename must show what it holds: C1 controls, the bidirectional embeddings, overrides,
isolates and marks (U+202A-202E, U+2066-2069, U+200E/200F, U+061C) and the Unicode line and paragraph
separators (U+2028/2029). Each refusal is a 400 whose code says what is wrong and whose ``details.field`` says where:

- ``Request.FieldTooLong`` (``limit``), ``Request.TooMany`` (``limit``), ``Request.TooDeep`` (``limit``),
- ``Request.NumberOutOfRange``, ``Request.InvalidCharacter``, ``Request.InvalidField`` (wrong type),
- ``Request.TooLarge`` is 413 and only for bodies; an encoded field over its size is ``Request.FieldTooLong``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import rfc8785

from compliance.errors import InvalidInput

MAX_TITLE = 300
MAX_EXTERNAL_ID = 200
MAX_PARTY_FIELD = 200
MAX_PARTIES = 100
MAX_PARTY_BYTES = 4 * 1024
MAX_PARTY_DEPTH = 4  # a party or a transferee, the object itself included
MAX_TEXT = 1000
MAX_FILENAME_INPUT = 1000  # what a filename may be as sent; the kept one is cut to vault_in_plan.MAX_FILENAME
MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_DEPTH = 16
MAX_BODY_DEPTH = 32  # a whole JSON body: deeper is refused before it is decoded (decoders recurse)
MAX_SAFE_INTEGER = 2**53
# Everywhere: DEL, C1 controls, bidi controls, U+2028/2029 and lone surrogates.
_ALWAYS_UNSAFE = r"\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff"
# One-line fields also refuse every C0 control; free text (notes, metadata) may keep tab and line breaks.
_LINE_UNSAFE = re.compile(rf"[\x00-\x1f{_ALWAYS_UNSAFE}]")
_TEXT_UNSAFE = re.compile(rf"[\x00-\x08\x0b\x0c\x0e-\x1f{_ALWAYS_UNSAFE}]")
# The same rules as JSON Schema patterns, for the OpenAPI document (vault/api/openapi_limits.py). Lone
# surrogates are left out there: they are no Unicode scalar value, so a schema's regex cannot name them.
_SCHEMA_UNSAFE = _ALWAYS_UNSAFE.removesuffix(r"\ud800-\udfff")
_LINE_CLASS = rf"\x00-\x1f{_SCHEMA_UNSAFE}"
LINE_PATTERN = rf"^[^{_LINE_CLASS}]*$"
TEXT_PATTERN = rf"^[^\x00-\x08\x0b\x0c\x0e-\x1f{_SCHEMA_UNSAFE}]*$"
# A one-line string that ``strip()`` does not empty: safe characters, at least one of them not whitespace.
NOT_BLANK_LINE_PATTERN = rf"^[^{_LINE_CLASS}]*[^\s{_LINE_CLASS}][^{_LINE_CLASS}]*$"
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def refuse(code: str, field: str, message: str, **details: Any) -> InvalidInput:
    return InvalidInput(code, message, field=field, **details)


def _check_string(value: Any, field: str, limit: int, unsafe: re.Pattern[str]) -> None:
    if not isinstance(value, str):
        raise refuse("Request.InvalidField", field, f"{field} must be a string")
    if len(value) > limit:
        raise refuse("Request.FieldTooLong", field, f"{field} is longer than {limit} characters", limit=limit)
    if found := unsafe.search(value):
        raise refuse(
            "Request.InvalidCharacter",
            field,
            f"{field} holds a control, bidirectional-formatting, line-separator or lone surrogate character",
            character=f"U+{ord(found.group()):04X}",
        )


def check_line(value: Any, field: str, limit: int, *, required: bool = False) -> None:
    """A one-line string: at most ``limit`` characters, no control characters."""
    if value is not None or required:
        _check_string(value, field, limit, _LINE_UNSAFE)


def check_filename(value: str, field: str) -> None:
    """A document's filename: no control or bidi character (a name that reads as ``invoice‮fdp.exe``)."""
    _check_string(value, field, MAX_FILENAME_INPUT, _LINE_UNSAFE)


def check_text(value: str | None, field: str, limit: int = MAX_TEXT) -> None:
    """Free text: at most ``limit`` characters; tab and line breaks allowed, other controls not."""
    if value is not None:
        _check_string(value, field, limit, _TEXT_UNSAFE)


def json_depth(raw: bytes, limit: int) -> int:
    """Nesting depth of raw JSON text, without decoding it (strings skipped); stops once past ``limit``."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_JSON_STRING.sub(b'""', raw)):
        depth += 1 if match.group() in (b"[", b"{") else -1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
    return deepest


_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def check_date_time(value: str | None, field: str) -> None:
    """An RFC 3339 date-time with its offset, as the document's ``format: date-time`` says (the parser behind
    it would also take a bare number, a space or no offset)."""
    if value is None:
        return
    if not _DATE_TIME.fullmatch(value):
        raise refuse("Request.InvalidField", field, f"{field} is an RFC 3339 date-time with its offset")


def check_json_depth(raw: bytes, field: str, limit: int = MAX_BODY_DEPTH) -> None:
    if json_depth(raw, limit) > limit:
        raise refuse("Request.TooDeep", field, f"{field} nests deeper than {limit} levels", limit=limit)


def check_json(
    value: Any, field: str, *, max_depth: int = MAX_METADATA_DEPTH, max_bytes: int = MAX_METADATA_BYTES
) -> None:
    """A JSON value kept for good: bounded depth, safe integers, clean strings (keys too), bounded encoding."""
    stack: list[tuple[Any, str, int]] = [(value, field, 1)]
    while stack:
        item, where, depth = stack.pop()
        if depth > max_depth:
            raise refuse("Request.TooDeep", field, f"{field} nests deeper than {max_depth} levels", limit=max_depth)
        if isinstance(item, dict):
            for key, child in item.items():
                check_text(key, f"{where}.<key>", MAX_TEXT)
                stack.append((child, f"{where}.{key}", depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
        elif isinstance(item, str):
            check_text(item, where, max_bytes)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not -MAX_SAFE_INTEGER < item < MAX_SAFE_INTEGER:
                raise refuse("Request.NumberOutOfRange", where, f"{where} is beyond +-2**53", limit=MAX_SAFE_INTEGER)
        elif isinstance(item, float):
            if not math.isfinite(item) or abs(item) >= MAX_SAFE_INTEGER:
                raise refuse("Request.NumberOutOfRange", where, f"{where} is not finite or beyond +-2**53")
        else:
            raise refuse("Request.InvalidField", where, f"{where} is not a JSON value")
    try:
        encoded = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as exc:
        raise refuse(
            "Request.InvalidField", field, f"{field} cannot be encoded as canonical JSON", error=str(exc)
        ) from None
    if len(encoded) > max_bytes:
        raise refuse("Request.FieldTooLong", field, f"{field} encodes to more than {max_bytes} bytes", limit=max_bytes)


def check_party(party: Any, field: str) -> None:
    """A party: an object with a name, and an email and role if given, each one line of at most 200 characters."""
    if not isinstance(party, dict):
        raise refuse("Envelope.InvalidParty", field, f"{field} must be an object")
    if not isinstance(party.get("name"), str) or not party["name"].strip():
        raise refuse("Envelope.InvalidParty", f"{field}.name", f"{field}.name is required")
    for name in ("name", "email", "role"):
        check_line(party.get(name), f"{field}.{name}", MAX_PARTY_FIELD)
    check_json(party, field, max_depth=MAX_PARTY_DEPTH, max_bytes=MAX_PARTY_BYTES)


def check_parties(parties: Any, field: str = "parties") -> None:
    if not isinstance(parties, list):
        raise refuse("Request.InvalidField", field, f"{field} must be a list")
    if len(parties) > MAX_PARTIES:
        raise refuse("Request.TooMany", field, f"at most {MAX_PARTIES} {field}", limit=MAX_PARTIES)
    for i, party in enumerate(parties):
        check_party(party, f"{field}[{i}]")


def check_envelope_fields(title: str, external_id: str | None, parties: Any, secured_party: Any, metadata: Any) -> None:
    """Everything a new envelope holds, bounded before its row and its ``envelope.created`` event exist."""
    check_line(title, "title", MAX_TITLE, required=True)
    check_line(external_id, "external_id", MAX_EXTERNAL_ID)
    check_parties(parties)
    if secured_party is not None:
        check_party(secured_party, "secured_party")
    if not isinstance(metadata, dict):
        raise refuse("Request.InvalidField", "metadata", "metadata must be an object")
    check_json(metadata, "metadata")


def check_release(transferee: Any, note: str | None) -> None:
    """A vault-out's free text and transferee, bounded before its event is written."""
    check_text(note, "note")
    if transferee is not None:
        if not isinstance(transferee, dict):
            raise refuse("Request.InvalidField", "transferee", "transferee must be an object")
        check_line(transferee.get("vault_id"), "transferee.vault_id", MAX_EXTERNAL_ID)
        check_json(transferee, "transferee", max_depth=MAX_PARTY_DEPTH, max_bytes=MAX_PARTY_BYTES)
