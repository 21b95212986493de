"""Plain text set as Letter-size PDF pages (Helvetica, WinAnsi): the pages the vault writes itself.

Lines longer than a page is wide are wrapped, and a page that is full continues on the next, so the whole text
is always there to read and to extract; nothing is cut off.
"""

from __future__ import annotations

import io
import textwrap

from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

WIDTH, HEIGHT, MARGIN = 612.0, 792.0, 54.0
Line = tuple[int, str]  # (font size, text)


def _escaped(text: str) -> str:
    latin = text.encode("cp1252", "replace").decode("cp1252")
    return "(" + latin.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def _wrapped(lines: list[Line]) -> list[Line]:
    out: list[Line] = []
    for size, text in lines:
        width = int((WIDTH - 2 * MARGIN) / (size * 0.55))  # Helvetica averages ~0.5 em a character
        parts = textwrap.wrap(text, width, subsequent_indent="    ", break_on_hyphens=False) or [""]
        out += [(size, part) for part in parts]
    return out


def text_pdf(lines: list[Line], title: str) -> bytes:
    """The lines on as many pages as they need."""
    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
                NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
            }
        )
    )
    pages: list[list[str]] = [[]]
    y = HEIGHT - MARGIN
    for size, text in _wrapped(lines):
        if y - size < MARGIN:
            pages.append([])
            y = HEIGHT - MARGIN
        y -= size + 5
        pages[-1].append(f"/F1 {size} Tf 1 0 0 1 {MARGIN} {y:.1f} Tm {_escaped(text)} Tj")
    for ops in pages:
        page = writer.add_blank_page(WIDTH, HEIGHT)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        stream = DecodedStreamObject()
        stream.set_data("\n".join(["BT", *ops, "ET"]).encode("cp1252"))
        page[NameObject("/Contents")] = writer._add_object(stream)
    writer.add_metadata({"/Title": title, "/Producer": "evault"})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
