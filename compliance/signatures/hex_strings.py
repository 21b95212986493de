"""Hex strings read a block at a time, for pypdf and pyHanko alike.

Both parsers read a ``<...>`` hex string one byte per Python call, skipping whitespace byte by byte. A signed
PDF's signature sits in one such string (``/Contents``: 3,680 hex digits for the tests' PAdES signature, more
with embedded certificates, timestamps or revocation data), read by each parser that opens the file, more than
once by some: about a fifth of the CPU that vetting and grading a signed 1 MiB upload cost (docs/benchmarks.md).
Neither library offers another reader, so :func:`install` puts one in front of each library's own.

It reads exactly what the library would, or leaves the string to the library: it finds the first ``>``, and if
everything before it is hex digits or PDF whitespace it decodes those digits (an odd count padded with ``0``,
as both do), leaves the stream just past the ``>``, and builds the string with the library's own constructor.
Anything else (a comment, which pyHanko skips; a stray byte, which both refuse; the end of the data) goes back
to the start and through the library's function, so its answer and its error stay the library's.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from typing import Any, BinaryIO

import pyhanko.pdf_utils.generic as pyhanko_generic
import pypdf.generic._data_structures as pypdf_structures
import pypdf.generic._utils as pypdf_utils

PDF_WHITESPACE = b" \n\r\t\f\x00"  # the same six bytes in both libraries
_PLAIN = b"0123456789abcdefABCDEF" + PDF_WHITESPACE
_BLOCK = 64 * 1024

Reader = Callable[..., Any]


def _digits(stream: BinaryIO) -> bytes | None:
    """The digits of the hex string at the stream's position (its ``<``), the stream left past its ``>``; or
    None, the stream where it was, when the string holds anything but digits and whitespace or never ends."""
    start = stream.tell()
    stream.read(1)
    parts: list[bytes] = []
    while True:
        block = stream.read(_BLOCK)
        end = block.find(b">")
        body = block if end < 0 else block[:end]
        if body.translate(None, _PLAIN) or (end < 0 and len(block) < _BLOCK):
            stream.seek(start)
            return None
        parts.append(body)
        if end >= 0:
            stream.seek(start + 1 + sum(map(len, parts)) + 1)
            digits = b"".join(parts).translate(None, PDF_WHITESPACE)
            return digits + b"0" if len(digits) % 2 else digits


def _block_reader(original: Reader, make: Reader) -> Reader:
    def read_hex_string_from_stream(stream: BinaryIO, *args: Any, **kwargs: Any) -> Any:
        digits = _digits(stream)
        if digits is None:
            return original(stream, *args, **kwargs)
        return make(binascii.unhexlify(digits), *args, **kwargs)

    read_hex_string_from_stream.original = original  # type: ignore[attr-defined]  # for the equivalence test
    return read_hex_string_from_stream


def install() -> None:
    """Put the block reader in front of each library's own, once (at the name its parser calls at run time)."""
    parsers: tuple[tuple[Any, Reader], ...] = (
        (pypdf_structures, pypdf_utils.create_string_object),
        (pyhanko_generic, pyhanko_generic.pdf_string),
    )
    for module, make in parsers:
        current = module.read_hex_string_from_stream
        if not hasattr(current, "original"):
            module.read_hex_string_from_stream = _block_reader(current, make)
