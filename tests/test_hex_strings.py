"""The block reader of hex strings answers exactly as pypdf's and pyHanko's own readers do, for every shape.

Equal means the same string (type, value and the attributes the libraries set on it), the stream left at the same
position, or the same error; and the parsers really call the block reader.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from typing import Any

import pyhanko.pdf_utils.generic as pyhanko_generic
import pypdf.generic._data_structures as pypdf_structures
import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pypdf import PdfReader

from compliance.signatures import hex_strings
from tests import signed_pdfs

pytestmark = pytest.mark.once  # no database involved

hex_strings.install()
READERS = {
    "pypdf": pypdf_structures.read_hex_string_from_stream,
    "pyhanko": pyhanko_generic.read_hex_string_from_stream,
}


def _outcome(read: Callable[..., Any], data: bytes) -> tuple[Any, ...]:
    stream = io.BytesIO(data)
    try:
        value = read(stream)
    except Exception as exc:
        return ("error", type(exc), str(exc))
    return ("value", type(value), bytes(value.original_bytes), str(value), vars(value), stream.tell())


def _random_hex(rng: random.Random, digits: int) -> bytes:
    out = bytearray(b"<")
    for _ in range(digits):
        out += rng.choice(b"0123456789abcdefABCDEF").to_bytes(1, "big")
        if rng.random() < 0.05:
            out += rng.choice([b" ", b"\n", b"\r\n", b"\t", b"\f", b"\x00", b"   "])
    return bytes(out)


def _shapes() -> list[bytes]:
    rng = random.Random(20261205)
    shapes = [
        b"<>",
        b"< >",
        b"<4>",
        b"<41>",
        b"<414>",
        b"<FEFF0041>",  # a UTF-16 BOM: a text string in both libraries
        b"<feff00e9 0041>",
        b"<\x00 4 1\x00>",
        b"<41> trailing /Name 12 0 R",
        b"<41><42>",
        b"<4g>",  # a stray byte: both refuse
        b"<41 % a comment\n42>",  # pyHanko skips the comment; pypdf refuses the %
        b"<41 <42>",
        b"<4142",  # never closed
        b"<",
        b"<" + b"0" * 70_000,  # never closed, past a block
        b"<" + b"ab" * 40_000 + b">",  # across blocks
        b"<" + b"ab" * 32_767 + b"a>",  # the > just past the first block
        b"<" + b"c" * (64 * 1024 - 1) + b">",
        b"<" + b"c" * (64 * 1024) + b">",
        b"<" + b"ab" * 40_000 + b"x>",  # a stray byte in the second block
    ]
    for digits in (1, 2, 3, 31, 32, 33, 1000, 16_385, 70_001):
        shapes.append(_random_hex(rng, digits) + b">")
        shapes.append(_random_hex(rng, digits) + b" >rest")
    return shapes


@pytest.mark.parametrize("library", sorted(READERS))
@pytest.mark.parametrize("data", _shapes(), ids=lambda d: f"{len(d)}B:{d[:12]!r}")
def test_the_block_reader_answers_as_the_library_does(library: str, data: bytes) -> None:
    block = READERS[library]
    assert _outcome(block, data) == _outcome(block.original, data)


def test_the_parsers_call_the_block_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """A signed PDF's /Contents, read by each parser, goes through the block reader and equals the library's."""
    data = signed_pdfs.valid()
    calls: list[str] = []

    def counted(name: str, read: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return read(*args, **kwargs)

        wrapper.original = read.original  # type: ignore[attr-defined]
        return wrapper

    def contents() -> tuple[bytes, bytes]:
        (sig,) = PdfFileReader(io.BytesIO(data)).embedded_signatures
        field = next(f for f in PdfReader(io.BytesIO(data)).get_fields().values() if f.get("/FT") == "/Sig")
        return bytes(sig.sig_object["/Contents"]), bytes(field["/V"].get_object()["/Contents"])

    monkeypatch.setattr(pypdf_structures, "read_hex_string_from_stream", counted("pypdf", READERS["pypdf"]))
    monkeypatch.setattr(pyhanko_generic, "read_hex_string_from_stream", counted("pyhanko", READERS["pyhanko"]))
    fast = contents()
    assert {"pypdf", "pyhanko"} <= set(calls)
    monkeypatch.setattr(pypdf_structures, "read_hex_string_from_stream", READERS["pypdf"].original)
    monkeypatch.setattr(pyhanko_generic, "read_hex_string_from_stream", READERS["pyhanko"].original)
    assert contents() == fast
    assert len(fast[0]) > 1000 and fast[0] == fast[1]
