"""Stamping of non-authoritative copies.

Under UCC 9-105 only the vaulted original is the authoritative copy; every copy handed out must say, on every
page, that it is not, and must not carry the original's signature fields (which would validate as broken and
could mislead). Nothing in the original may hide or imitate the mark, so the mark is drawn where the original
cannot draw (the geometry is defined in ``compliance.conditions.copy_mark``):

- the copy's MediaBox and CropBox are the original's visible box (CropBox within MediaBox) grown by the
  band on the side that displays at the top (turned with /Rotate, which the copy states explicitly); Bleed,
  Trim and ArtBox are removed, so they default to that CropBox; the band is filled and carries the mark's
  lines as real text;
- each page's original content becomes a Form XObject whose BBox is its visible box, drawn under a clip to
  that box, so whatever state it leaves behind (unbalanced ``Q``, a clip, a transform, an open
  marked-content section) ends with the form and nothing it paints reaches the band; a content stream
  shared by many pages becomes one shared form, so the work stays linear and the stream is never edited
  (pypdf's ``merge_page`` edits a shared stream once per page: quadratic, nested N deep);
- annotations paint above page content, so each visible appearance is flattened into the page, inside the
  same clip, and the annotation is removed; a link keeps a plain URI/GoTo action, paints nothing, and its
  area is cut to the original's box;
- JavaScript, open actions, additional actions and optional-content configuration are dropped;
- the mark is drawn last, outside any optional content.

Only small new streams are written (Flate-compressed); the original streams are carried over still encoded.
"""

from __future__ import annotations

import io
import math
from typing import Any

from pypdf import PageObject, PdfReader, PdfWriter
from pypdf.generic import (
    ArrayObject,
    DecodedStreamObject,
    DictionaryObject,
    EncodedStreamObject,
    FloatObject,
    IndirectObject,
    NameObject,
    NumberObject,
    PdfObject,
    StreamObject,
    TextStringObject,
)

from compliance import pdf_names
from compliance.conditions.copy_mark import (
    BAND_RGB,
    Box,
    CopyMark,
    band_height,
    box,
    copy_box,
    display_size,
    rotation,
    visible_box,
)
from compliance.pdf_bytes import PdfBytes

pdf_names.install()  # every name of every page is written; pypdf writes each a character at a time

_CATALOG_DROPPED = ("/AcroForm", "/Perms", "/DSS", "/OpenAction", "/AA", "/OCProperties")
_HIDDEN_FLAGS = 2 | 32  # Hidden, NoView: the original does not show these appearances either
_ORIGINAL = NameObject("/EvaultOriginal")
_FONT = NameObject("/EvaultMarkF")
_LIGHT = NameObject("/EvaultMarkGS")
_DRAW_ORIGINAL = f"{_ORIGINAL} Do\n"


def _pdf_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return "(" + escaped.encode("latin-1", "replace").decode("latin-1") + ")"


def _em_width(text: str) -> float:
    """Upper-bound Helvetica width in ems, close enough to size text so it fits the page."""
    return sum(0.72 if c.isupper() or c in "@%&" else 0.3 if c in " .,:;-/()|'" else 0.56 for c in text)


def _display_frame(rect: Box, turn: int) -> tuple[str, float, float]:
    """The ``cm`` mapping upright display coordinates onto ``rect``, and the display width/height.

    /Rotate turns the page clockwise for display, so the mark is drawn turned the other way to read upright.
    """
    x0, y0, x1, y1 = rect
    width, height = display_size(rect, turn)
    if turn == 90:
        return f"0 1 -1 0 {x1:.4f} {y0:.4f} cm", width, height
    if turn == 180:
        return f"-1 0 0 -1 {x1:.4f} {y1:.4f} cm", width, height
    if turn == 270:
        return f"0 -1 1 0 {x0:.4f} {y1:.4f} cm", width, height
    return f"1 0 0 1 {x0:.4f} {y0:.4f} cm", width, height


def mark_content(lines: list[str], frame: str, width: float, height: float) -> str:
    """The mark's operators on a copy page displayed ``width`` x ``height``: the band, filled, with the lines
    in white across the top ``band_height(height)``, and a faint diagonal COPY over the original's area (a
    courtesy for printouts; the band is what proves the page a copy, since the page below can hide the COPY)."""
    band = band_height(height)
    below = height - band
    pad = band * 0.1
    margin = max(2.0, min(12.0, width * 0.02))
    size = min((band - 2 * pad) / 3.5, (width - 2 * margin) / max(_em_width(line) for line in lines))
    lead = size * 1.25
    text = f" 0 {-lead:.4f} Td ".join(f"{_pdf_string(line)} Tj" for line in lines)
    angle = math.atan2(below, width)
    cos, sin = math.cos(angle), math.sin(angle)
    big = 0.6 * math.hypot(width, below) / _em_width("COPY")
    half_w, half_h = big * _em_width("COPY") / 2, big * 0.36
    tx = width / 2 - half_w * cos + half_h * sin
    ty = below / 2 - half_w * sin - half_h * cos
    red, green, blue = BAND_RGB
    return (
        f"q {frame} {_LIGHT} gs BT {_FONT} {big:.2f} Tf 0.5 0.5 0.5 rg "
        f"{cos:.4f} {sin:.4f} {-sin:.4f} {cos:.4f} {tx:.2f} {ty:.2f} Tm (COPY) Tj ET Q\n"
        f"q {frame} {red} {green} {blue} rg 0 {below:.4f} {width:.4f} {band:.4f} re f "
        f"BT {_FONT} {size:.4f} Tf 1 1 1 rg {margin:.4f} {height - pad - 0.75 * size:.4f} Td {text} ET Q\n"
    )


def mark_objects() -> tuple[DictionaryObject, DictionaryObject]:
    """The font and the faint graphics state that the mark's operators name."""
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
            NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
        }
    )
    light = DictionaryObject({NameObject("/Type"): NameObject("/ExtGState"), NameObject("/ca"): FloatObject(0.15)})
    return font, light


def _compressed(data: bytes) -> EncodedStreamObject:
    stream = DecodedStreamObject()
    stream.set_data(data)
    return stream.flate_encode()


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


def _strip_reader(reader: PdfReader) -> None:
    """Unlink what must not reach the copy in the reader's parsed objects, so the clone never copies it."""
    root = reader.root_object
    for key in _CATALOG_DROPPED:
        root.pop(NameObject(key), None)
    names = root.get("/Names")
    if isinstance(names, DictionaryObject):
        names.pop(NameObject("/JavaScript"), None)
    for page in reader.pages:
        # reader.pages hands out copies; edit the cached dictionary that cloning will reach.
        node = page.indirect_reference.get_object() if page.indirect_reference else page
        if not isinstance(node, DictionaryObject) or "/Annots" not in node:
            continue
        annots = node["/Annots"].get_object()
        if not isinstance(annots, ArrayObject):
            del node[NameObject("/Annots")]
            continue
        node[NameObject("/Annots")] = ArrayObject(ref for ref in annots if not _is_signature_widget(ref.get_object()))


class _PageStamper:
    """Per-document state, so shared content becomes one shared form and identical streams one object."""

    def __init__(self, writer: PdfWriter, mark: CopyMark) -> None:
        self.writer = writer
        self.lines = mark.lines()
        font, light = mark_objects()
        self.font = writer._add_object(font)
        self.light = writer._add_object(light)
        self.forms: dict[tuple[Any, ...], IndirectObject] = {}
        self.marks: dict[tuple[str, float, float], IndirectObject] = {}
        self.clipped: dict[Box, IndirectObject] = {}

    def _key(self, obj: Any) -> Any:
        return ("ref", obj.idnum) if isinstance(obj, IndirectObject) else ("id", id(obj))

    def _original_form(self, page: PageObject, visible: Box) -> IndirectObject | None:
        """The page's own content as a Form XObject clipped to the visible box; one per (content, resources, box)."""
        contents = page.raw_get("/Contents") if "/Contents" in page else None
        resources = page.raw_get("/Resources") if "/Resources" in page else DictionaryObject()
        resolved = contents.get_object() if contents is not None else None
        parts = [resolved] if isinstance(resolved, StreamObject) else list(resolved or [])
        key = (tuple(self._key(p) for p in ([contents] if len(parts) == 1 else parts)), self._key(resources), visible)
        if not parts:
            return None
        if key in self.forms:
            return self.forms[key]
        streams = [p.get_object() for p in parts]
        if len(streams) == 1 and isinstance(streams[0], StreamObject):
            source = streams[0]
            form: StreamObject = EncodedStreamObject() if "/Filter" in source else DecodedStreamObject()
            form._data = source._data
            for name in ("/Filter", "/DecodeParms"):
                if name in source:
                    form[NameObject(name)] = source.raw_get(name)
        else:
            data = b"\n".join(s.get_data() for s in streams if isinstance(s, StreamObject))
            form = _compressed(data)
        form[NameObject("/Type")] = NameObject("/XObject")
        form[NameObject("/Subtype")] = NameObject("/Form")
        form[NameObject("/BBox")] = ArrayObject(FloatObject(v) for v in visible)
        form[NameObject("/Resources")] = resources
        self.forms[key] = self.writer._add_object(form)
        return self.forms[key]

    def _original_stream(self, visible: Box, draws: str) -> IndirectObject:
        """``draws`` (the original and its flattened annotations) under a clip to the original's visible box,
        so nothing of the original reaches the band; the common case (no annotations) is one shared stream."""
        x0, y0, x1, y1 = visible
        clip = f"q {x0:.4f} {y0:.4f} {x1 - x0:.4f} {y1 - y0:.4f} re W n\n"
        if draws == _DRAW_ORIGINAL:
            if visible not in self.clipped:
                self.clipped[visible] = self.writer._add_object(_compressed(f"{clip}{draws}Q\n".encode()))
            return self.clipped[visible]
        return self.writer._add_object(_compressed(f"{clip}{draws}Q\n".encode()))

    def _mark_stream(self, copy: Box, turn: int) -> IndirectObject:
        frame, width, height = _display_frame(copy, turn)
        key = (frame, round(width, 4), round(height, 4))
        if key not in self.marks:
            content = mark_content(self.lines, frame, width, height).encode("latin-1")
            self.marks[key] = self.writer._add_object(_compressed(content))
        return self.marks[key]

    def _flatten_annotations(self, page: PageObject, visible: Box, xobjects: DictionaryObject) -> str:
        """Draw each visible annotation's normal appearance where the viewer would, then drop the annotation."""
        annots = page.get("/Annots")
        page.pop(NameObject("/Annots"), None)
        if not isinstance(annots, ArrayObject):
            return ""
        kept: list[PdfObject] = []
        ops: list[str] = []
        for ref in annots:
            annot = ref.get_object()
            if not isinstance(annot, DictionaryObject):
                continue
            if annot.get("/Subtype") == "/Link":
                link = _plain_link(annot, visible)
                if link is not None:
                    kept.append(self.writer._add_object(link))
                continue
            placed = _appearance(annot)
            if placed is None:
                continue
            stream, matrix = placed
            stream.pop(NameObject("/OC"), None)
            name = NameObject(f"/EvaultAnnot{len(ops)}")
            xobjects[name] = stream.indirect_reference or self.writer._add_object(stream)
            ops.append(f"q {' '.join(f'{v:.4f}' for v in matrix)} cm {name} Do Q\n")
        if kept:
            page[NameObject("/Annots")] = ArrayObject(kept)
        return "".join(ops)

    def stamp(self, page: PageObject) -> None:
        """Grow the page by the band, draw the original clipped to its own box, then the mark."""
        visible, turn = visible_box(page), rotation(page)
        copy = copy_box(visible, turn)
        xobjects = DictionaryObject()
        form = self._original_form(page, visible)
        if form is not None:
            xobjects[_ORIGINAL] = form
        draws = (_DRAW_ORIGINAL if form is not None else "") + self._flatten_annotations(page, visible, xobjects)
        contents: list[PdfObject] = [self._original_stream(visible, draws)] if draws else []
        contents.append(self._mark_stream(copy, turn))
        page.pop(NameObject("/AA"), None)
        page[NameObject("/Contents")] = ArrayObject(contents)
        page[NameObject("/Resources")] = DictionaryObject(
            {
                NameObject("/XObject"): xobjects,
                NameObject("/Font"): DictionaryObject({_FONT: self.font}),
                NameObject("/ExtGState"): DictionaryObject({_LIGHT: self.light}),
            }
        )
        for name in ("/MediaBox", "/CropBox"):
            page[NameObject(name)] = ArrayObject(FloatObject(round(v, 4)) for v in copy)
        for name in ("/BleedBox", "/TrimBox", "/ArtBox"):  # absent, they are the CropBox: the band included
            page.pop(NameObject(name), None)
        page[NameObject("/Rotate")] = NumberObject(turn)


def _plain_link(annot: DictionaryObject, visible: Box) -> DictionaryObject | None:
    """A link that still works (URI or in-document destination) but paints nothing and runs no script; its
    area is cut to the original's visible box (never the band), and a link wholly outside it is dropped."""
    rect = box(annot.get("/Rect"))
    if rect is None:
        return None
    rect = (max(rect[0], visible[0]), max(rect[1], visible[1]), min(rect[2], visible[2]), min(rect[3], visible[3]))
    if rect[0] >= rect[2] or rect[1] >= rect[3]:
        return None
    link = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Annot"),
            NameObject("/Subtype"): NameObject("/Link"),
            NameObject("/Rect"): ArrayObject(FloatObject(v) for v in rect),
            NameObject("/Border"): ArrayObject([NumberObject(0), NumberObject(0), NumberObject(0)]),
        }
    )
    action = annot.get("/A")
    if isinstance(action, DictionaryObject) and action.get("/S") == "/URI" and "/URI" in action:
        link[NameObject("/A")] = DictionaryObject(
            {NameObject("/S"): NameObject("/URI"), NameObject("/URI"): action.raw_get("/URI")}
        )
    elif isinstance(action, DictionaryObject) and action.get("/S") == "/GoTo" and "/D" in action:
        link[NameObject("/A")] = DictionaryObject(
            {NameObject("/S"): NameObject("/GoTo"), NameObject("/D"): action.raw_get("/D")}
        )
    elif "/Dest" in annot:
        link[NameObject("/Dest")] = annot.raw_get("/Dest")
    return link


def _appearance(annot: DictionaryObject) -> tuple[StreamObject, tuple[float, ...]] | None:
    """The normal appearance stream and the ``cm`` that maps its (transformed) BBox onto /Rect (ISO 32000 12.5.5)."""
    if annot.get("/Subtype") == "/Popup" or int(annot.get("/F", 0) or 0) & _HIDDEN_FLAGS:
        return None
    appearances = annot.get("/AP")
    normal = appearances.get("/N") if isinstance(appearances, DictionaryObject) else None
    if isinstance(normal, DictionaryObject) and not isinstance(normal, StreamObject):
        normal = normal.get(annot.get("/AS", ""))
    rect = box(annot.get("/Rect"))
    bbox = box(normal.get("/BBox")) if isinstance(normal, StreamObject) else None
    if not isinstance(normal, StreamObject) or rect is None or bbox is None:
        return None
    try:
        a, b, c, d, e, f = (float(v) for v in normal.get("/Matrix", [1, 0, 0, 1, 0, 0]))
    except (TypeError, ValueError):
        return None
    corners = [(a * x + c * y + e, b * x + d * y + f) for x in (bbox[0], bbox[2]) for y in (bbox[1], bbox[3])]
    tx0, ty0 = min(p[0] for p in corners), min(p[1] for p in corners)
    tw, th = max(p[0] for p in corners) - tx0, max(p[1] for p in corners) - ty0
    if tw <= 0 or th <= 0:
        return None
    sx, sy = (rect[2] - rect[0]) / tw, (rect[3] - rect[1]) / th
    return normal, (sx, 0.0, 0.0, sy, rect[0] - sx * tx0, rect[1] - sy * ty0)


def _drop_unreachable(writer: PdfWriter) -> None:
    """Free every object the trailer cannot reach: each page's replaced content stream (its bytes live on in
    the page's form, so writing it would hold them twice) and the dropped annotations with all they alone use.

    pypdf's ``compress_identical_objects(remove_duplicates=False)`` frees only objects that no object names,
    and hashes every object's bytes first, a third of stamping a 1 MiB page (docs/benchmarks.md)."""
    objects = writer._objects
    reached = [False] * len(objects)
    pending: list[Any] = [writer._ID]
    for held in (writer._root_object, writer._info, writer._encrypt_entry):
        if held is not None:
            pending.append(held.indirect_reference)
    while pending:
        node = pending.pop()
        if isinstance(node, IndirectObject):
            if node.pdf is not writer or not 0 < node.idnum <= len(objects) or reached[node.idnum - 1]:
                continue
            reached[node.idnum - 1] = True
            node = objects[node.idnum - 1]
        if isinstance(node, DictionaryObject):  # a stream's dictionary included
            pending.extend(node.values())
        elif isinstance(node, ArrayObject):
            pending.extend(node)
    for index, kept in enumerate(reached):
        if not kept:
            objects[index] = None


def stamp_copy(source: bytes | PdfReader, mark: CopyMark) -> bytes:
    """A new PDF: every page carries the mark, signature fields are gone, metadata names the copy.

    ``source`` is the original, or a reader of it that nothing has changed (vetting's rehearsal hands in the
    reader that vetted the file, so it is not parsed again); the reader is changed by the stamping. Runs
    in-process; the service calls it through ``vault.stamp_worker`` so a hostile file meets a memory limit and
    a timeout.
    """
    reader = source if isinstance(source, PdfReader) else PdfReader(PdfBytes(source))
    _strip_reader(reader)
    writer = PdfWriter(clone_from=reader)
    stamper = _PageStamper(writer, mark)
    for page in writer.pages:
        stamper.stamp(page)
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
    _drop_unreachable(writer)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
