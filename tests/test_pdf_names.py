"""pypdf writes every name as its own ``NameObject.renumber`` would, with the plain-name check in front of it
(compliance/pdf_names.py), and the check is the one pypdf calls."""

from __future__ import annotations

import io
import random

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.generic import DictionaryObject, NameObject, NumberObject

from compliance import pdf_names

pytestmark = pytest.mark.once  # no database involved

pdf_names.install()
ORIGINAL = NameObject.renumber.original  # type: ignore[attr-defined]


def _names() -> list[str]:
    rng = random.Random(20261206)
    alphabet = [chr(c) for c in range(0, 0x80)] + ["é", "ß", "€", "😀", "\u2028", "\x7f", "\xa0"]
    shapes = ["/", "/Type", "/EvaultOriginal", "/A#20B", "/a b", "/(x)", "/x/y", "/100%", "/~!", "/é", "Type", ""]
    shapes += ["/" + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(3000)]
    shapes += ["/" + "".join(chr(rng.randint(0x21, 0x7E)) for _ in range(rng.randint(1, 12))) for _ in range(3000)]
    return shapes


def _outcome(renumber: object, name: str) -> tuple[object, ...]:
    try:
        return ("bytes", renumber(NameObject(name)))  # type: ignore[operator]
    except Exception as exc:
        return ("error", type(exc), str(exc))


def test_every_name_is_written_as_pypdf_writes_it() -> None:
    for name in _names():
        assert _outcome(NameObject.renumber, name) == _outcome(ORIGINAL, name), repr(name)


def test_pypdf_writes_through_the_check() -> None:
    assert NameObject.renumber is not ORIGINAL
    pdf_names.install()  # a second install keeps one check, in front of pypdf's own
    assert NameObject.renumber.original is ORIGINAL  # type: ignore[attr-defined]
    writer = PdfWriter()
    page = writer.add_blank_page(100, 100)
    page[NameObject("/Evault Odd#Name")] = DictionaryObject({NameObject("/Plain"): NumberObject(1)})
    out = io.BytesIO()
    writer.write(out)
    assert b"/Evault#20Odd#23Name" in out.getvalue() and b"/Plain 1" in out.getvalue()
    read_back = PdfReader(io.BytesIO(out.getvalue())).pages[0]["/Evault Odd#Name"]
    assert isinstance(read_back, DictionaryObject) and int(read_back["/Plain"]) == 1  # type: ignore[call-overload]
