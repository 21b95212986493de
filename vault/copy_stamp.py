"""Stamping of non-authoritative copies.

Under UCC 9-105 only the vaulted original is the authoritative copy; every copy handed out must say, on every
page, that it is not, and must not carry the original's signature fields (which would validate as broken and
could mislead). Pages are stamped with a hand-built overlay (Helvetica, a standard font) so pypdf is the only
dependency.
"""

from __future__ import annotations

import io
import math

from pypdf import PageObject, PdfReader, PdfWriter
from pypdf.generic import (
    ArrayObject,
    DecodedStreamObject,
    DictionaryObject,
    FloatObject,
    NameObject,
    PdfObject,
    TextStringObject,
)

from compliance.copy_mark import CopyMark

_MAX_BAND_FONT = 8.0
_MARK_COLOR = "0.65 0 0 rg"


def _pdf_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return "(" + escaped.encode("latin-1", "replace").decode("latin-1") + ")"


def _em_width(text: str) -> float:
    """Upper-bound Helvetica width in ems, close enough to size text so it fits the page."""
    return sum(0.72 if c.isupper() or c in "@%&" else 0.3 if c in " .,:;-/()|'" else 0.56 for c in text)


def _display_frame(page: PageObject) -> tuple[str, float, float]:
    """The ``cm`` mapping upright display coordinates onto the page's CropBox, and the display width/height.

    /Rotate turns the page clockwise for display, so the band is drawn turned the other way to read upright.
    """
    box = page.cropbox
    x0, y0, x1, y1 = float(box.left), float(box.bottom), float(box.right), float(box.top)
    w, h = x1 - x0, y1 - y0
    rotation = page.rotation % 360
    if rotation == 90:
        return f"0 1 -1 0 {x1:.2f} {y0:.2f} cm", h, w
    if rotation == 180:
        return f"-1 0 0 -1 {x1:.2f} {y1:.2f} cm", w, h
    if rotation == 270:
        return f"0 -1 1 0 {x0:.2f} {y1:.2f} cm", h, w
    return f"1 0 0 1 {x0:.2f} {y0:.2f} cm", w, h


def _overlay_content(lines: list[str], frame: str, width: float, height: float) -> str:
    margin = max(4.0, min(18.0, width * 0.03, height * 0.03))
    size = min(_MAX_BAND_FONT, (width - 2 * margin) / max(_em_width(line) for line in lines))
    lead = size * 1.25
    band = f" 0 {-lead:.2f} Td ".join(f"{_pdf_string(line)} Tj" for line in lines)
    angle = math.atan2(height, width)
    cos, sin = math.cos(angle), math.sin(angle)
    big = 0.6 * math.hypot(width, height) / _em_width("COPY")
    half_w, half_h = big * _em_width("COPY") / 2, big * 0.36
    tx = width / 2 - half_w * cos + half_h * sin
    ty = height / 2 - half_w * sin - half_h * cos
    return (
        f"q {frame} /MarkGS gs BT /MarkF {big:.2f} Tf 0.5 0.5 0.5 rg "
        f"{cos:.4f} {sin:.4f} {-sin:.4f} {cos:.4f} {tx:.2f} {ty:.2f} Tm (COPY) Tj ET Q\n"
        f"q {frame} BT /MarkF {size:.2f} Tf {_MARK_COLOR} "
        f"{margin:.2f} {height - margin - size:.2f} Td {band} ET Q\n"
    )


def _overlay_page(mark: CopyMark, page: PageObject) -> PageObject:
    frame, width, height = _display_frame(page)
    overlay = PageObject.create_blank_page(width=float(page.mediabox.width), height=float(page.mediabox.height))
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
            NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
        }
    )
    light = DictionaryObject({NameObject("/Type"): NameObject("/ExtGState"), NameObject("/ca"): FloatObject(0.15)})
    overlay[NameObject("/Resources")] = DictionaryObject(
        {
            NameObject("/Font"): DictionaryObject({NameObject("/MarkF"): font}),
            NameObject("/ExtGState"): DictionaryObject({NameObject("/MarkGS"): light}),
        }
    )
    content = DecodedStreamObject()
    content.set_data(_overlay_content(mark.lines(), frame, width, height).encode("latin-1"))
    overlay[NameObject("/Contents")] = content
    return overlay


def _is_signature_widget(annot: PdfObject | None) -> bool:
    """A widget belongs to a signature field if it, or a field above it, has /FT /Sig."""
    node = annot
    for _ in range(32):  # form trees are shallow; the bound guards against /Parent cycles
        if not isinstance(node, DictionaryObject):
            return False
        if node.get("/FT") == "/Sig":
            return True
        parent = node.get("/Parent")
        node = parent.get_object() if parent is not None else None
    return False


def _strip_signatures(reader: PdfReader) -> None:
    """Unlink signature fields in the reader's parsed objects, so the clone never copies them or their CMS."""
    for key in ("/AcroForm", "/Perms", "/DSS"):
        reader.root_object.pop(NameObject(key), None)
    for page in reader.pages:
        # reader.pages hands out copies; edit the cached dictionary that cloning will reach.
        node = page.indirect_reference.get_object() if page.indirect_reference else page
        if not isinstance(node, DictionaryObject) or "/Annots" not in node:
            continue
        annots = node["/Annots"].get_object()
        if not isinstance(annots, ArrayObject):
            continue
        kept = [ref for ref in annots if not _is_signature_widget(ref.get_object())]
        if kept:
            node[NameObject("/Annots")] = ArrayObject(kept)
        else:
            del node[NameObject("/Annots")]


def stamp_copy(source: bytes, mark: CopyMark) -> bytes:
    """A new PDF: every page carries the mark, signature fields are gone, metadata names the copy."""
    reader = PdfReader(io.BytesIO(source))
    _strip_signatures(reader)
    writer = PdfWriter(clone_from=reader)
    for page in writer.pages:
        page.merge_page(_overlay_page(mark, page), over=True)
    title = reader.metadata.title if reader.metadata and reader.metadata.title else ""
    label = f"NON-AUTHORITATIVE COPY {mark.copy_id}"
    writer.add_metadata(
        {
            "/Title": TextStringObject(f"{title} ({label})" if title else label),
            "/Subject": TextStringObject(
                f"Non-authoritative copy {mark.copy_id} of envelope {mark.envelope_id}, "
                f"source SHA-256 {mark.source_sha256}, issued {mark.issued_iso}"
            ),
        }
    )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
