"""Hand-assembled hostile PDFs: each one attacks the vetting budget, a parser, or the visibility of the mark.

Files are written object by object (no PDF library), so they can be what no library would write and huge ones
cost little to build: a 200,000-page tree is a few seconds of string joins.
"""

from __future__ import annotations

import functools
import struct
import zlib

_MEDIA = b"/MediaBox [0 0 612 792]"
_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
_TEXT = b"BT /F1 24 Tf 72 700 Td (Original page text) Tj ET"
_WHITE_FULL_PAGE = b"1 1 1 rg 0 0 612 792 re f"


def stream(entries: bytes, data: bytes) -> bytes:
    return b"<< " + entries + b" /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def assemble(objects: list[bytes], root: int = 1) -> bytes:
    """Objects numbered from 1 in order, a classic xref table, and a trailer naming ``root`` as the catalog."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, root, xref)
    return bytes(out)


def one_page(page_extra: bytes = b"", content: bytes = _TEXT, extra_objects: list[bytes] | None = None) -> bytes:
    """Catalog 1, Pages 2, Page 3, content 4, font 5, then ``extra_objects`` from 6 on."""
    return assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R " + _MEDIA + b" /Resources << /Font << /F1 5 0 R >> >>"
            b" /Contents 4 0 R " + page_extra + b" >>",
            stream(b"", content),
            _FONT,
            *(extra_objects or []),
        ]
    )


@functools.cache
def inflating_stream(inflated: int) -> bytes:
    return zlib.compress(b" " * inflated, 9)


def decompression_bomb(streams: int = 10, inflated_each: int = 74_000_000) -> bytes:
    """``streams`` Flate streams of blanks, each tiny compressed and ``inflated_each`` bytes decoded.

    The defaults are the 0.72 MB file whose stamped copy once cost 1.5 GB of memory and 740 MB on disk.
    """
    blob = inflating_stream(inflated_each)
    first = 6
    refs = b" ".join(b"%d 0 R" % (first + i) for i in range(streams))
    return one_page(
        b"/EvaultBombs [" + refs + b"]",
        extra_objects=[stream(b"/Filter /FlateDecode", blob) for _ in range(streams)],
    )


def dense_page(rects: int) -> bytes:
    """One page of ``rects`` tiny filled squares in one Flate stream: a few KB that a renderer holds as
    ``rects`` parsed objects (pdfium: ~25 times the decoded content)."""
    data = zlib.compress(b"0 0 3 3 re f\n" * rects, 9)
    return assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R " + _MEDIA + b" /Contents 4 0 R >>",
            stream(b"/Filter /FlateDecode", data),
        ]
    )


def shared_content(pages: int) -> bytes:
    """``pages`` pages that all name one content stream (the case that made ``merge_page`` quadratic)."""
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
    page = b"<< /Type /Page /Parent 2 0 R " + _MEDIA + b" /Resources << /Font << /F1 4 0 R >> >> /Contents 3 0 R >>"
    return assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages,
            stream(b"", _TEXT),
            _FONT,
            *([page] * pages),
        ]
    )


def huge_page_tree(pages: int = 200_000, fanout: int = 1000) -> bytes:
    """A balanced tree of ``pages`` distinct leaves under ``pages / fanout`` intermediate nodes."""
    nodes = -(-pages // fanout)
    first_node, first_leaf = 3, 3 + nodes
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % (first_node + n) for n in range(nodes)), pages),
    ]
    for n in range(nodes):
        leaves = range(n * fanout, min(pages, (n + 1) * fanout))
        kids = b" ".join(b"%d 0 R" % (first_leaf + leaf) for leaf in leaves)
        objects.append(b"<< /Type /Pages /Parent 2 0 R /Kids [%s] /Count %d >>" % (kids, len(leaves)))
    for leaf in range(pages):
        objects.append(b"<< /Type /Page /Parent %d 0 R " % (first_node + leaf // fanout) + _MEDIA + b" >>")
    return assemble(objects)


def deep_reference_chain(depth: int = 5000) -> bytes:
    """The page names object 6, which names 7, ... ``depth`` levels of indirect references deep."""
    chain = [b"<< /Next %d 0 R >>" % (7 + i) for i in range(depth - 1)] + [b"<< /End true >>"]
    return one_page(b"/EvaultChain 6 0 R", extra_objects=chain)


def self_reference() -> bytes:
    """Object 6 is nothing but a reference to itself, and the page's resources name it."""
    return one_page(b"/EvaultSelf 6 0 R", extra_objects=[b"6 0 R"])


def object_stream_loop() -> bytes:
    """An object stream that /Extends itself and holds an object claiming to live in that same stream.

    Written with a cross-reference stream, since only those can say "object n is inside object stream m".
    """
    inner = b"<< /Looped 7 0 R >>"
    header = b"7 0 "
    objstm = stream(b"/Type /ObjStm /N 1 /First %d /Extends 6 0 R" % len(header), header + inner)
    bodies = [
        b"<< /Type /Catalog /Pages 2 0 R /EvaultLoop 7 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R " + _MEDIA + b" /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        stream(b"", _TEXT),
        _FONT,
        objstm,
    ]
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(bodies, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_at = len(out)
    rows = [struct.pack(">BIH", 0, 0, 65535)]
    rows += [struct.pack(">BIH", 1, offset, 0) for offset in offsets]
    rows.append(struct.pack(">BIH", 2, 6, 0))  # object 7: index 0 of object stream 6
    rows.append(struct.pack(">BIH", 1, xref_at, 0))  # object 8: this xref stream
    data = b"".join(rows)
    out += b"8 0 obj\n" + stream(b"/Type /XRef /Size 9 /W [1 4 2] /Root 1 0 R", data) + b"\nendobj\n"
    out += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


# --- Files that try to hide the mark ------------------------------------------------------------------------


def _appearance(rect: bytes, data: bytes, extra: bytes = b"") -> bytes:
    return stream(b"/Type /XObject /Subtype /Form /BBox [" + rect + b"] " + extra, data)


def covering_annotation() -> bytes:
    """A full-page opaque /Stamp annotation: viewers paint it above the page content, mark included."""
    annot = b"<< /Type /Annot /Subtype /Stamp /Rect [0 0 612 792] /F 4 /AP << /N 7 0 R >> >>"
    return one_page(b"/Annots [6 0 R]", extra_objects=[annot, _appearance(b"0 0 612 792", _WHITE_FULL_PAGE)])


def painting_link() -> bytes:
    """A link whose appearance paints an opaque box over the whole page, its action chained to a script."""
    annot = (
        b"<< /Type /Annot /Subtype /Link /Rect [0 0 612 792] /F 4 /AP << /N 7 0 R >> /Border [0 0 12]"
        b" /C [0 0 1] /A << /S /URI /URI (https://example.com/) /Next << /S /JavaScript /JS (app.alert(1)) >> >> >>"
    )
    return one_page(b"/Annots [6 0 R]", extra_objects=[annot, _appearance(b"0 0 612 792", _WHITE_FULL_PAGE)])


def odd_cropbox() -> bytes:
    """A CropBox given upside down and reaching past the MediaBox: only [100 100 612 500] is visible."""
    return one_page(b"/CropBox [700 500 100 100]")


def rotated_cropped_page() -> bytes:
    """/Rotate 270 and a CropBox inside the MediaBox."""
    return one_page(b"/Rotate 270 /CropBox [50 80 560 700]")


def hiding_optional_content() -> bytes:
    """Optional content switched off, left open at the end of the page, so anything drawn after is hidden.

    The content also unbalances the graphics state (extra ``Q``) and clips to a 1-point square, which would
    hide a mark appended to the same content stream.
    """
    content = b"/OC /Hide BDC " + _TEXT + b" Q Q Q 0 0 1 1 re W n 0.001 0 0 0.001 0 0 cm"
    ocg = b"<< /Type /OCG /Name (Hide) >>"
    annot = b"<< /Type /Annot /Subtype /Stamp /Rect [0 0 612 792] /F 4 /OC 6 0 R /AP << /N 8 0 R >> >>"
    data = assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R /OCProperties << /OCGs [6 0 R] /D << /OFF [6 0 R] /ON [] >> >>"
            b" /OpenAction << /S /JavaScript /JS (app.alert(1)) >> /AA << /WC << /S /JavaScript /JS (1) >> >> >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R " + _MEDIA + b" /Resources << /Font << /F1 5 0 R >>"
            b" /Properties << /Hide 6 0 R >> >> /Contents 4 0 R /Annots [7 0 R] >>",
            stream(b"", content),
            _FONT,
            ocg,
            annot,
            _appearance(b"0 0 612 792", _WHITE_FULL_PAGE),
        ]
    )
    return data


# --- Files that try to look like their own copy (the copy mark's camouflage) -------------------------------

_BAND_RED = b"0.65 0 0 rg"  # compliance.conditions.copy_mark.BAND_RGB


def camouflage() -> bytes:
    """The finding's page: painted 50% grey, with a header bar in the band's own red where the old mark's
    red text sat, so a mark drawn over the page (red text, a faint grey COPY) rendered pixel-identical."""
    content = b"0.5 g 0 0 612 792 re f " + _BAND_RED + b" 0 712 612 80 re f 0 g " + _TEXT.replace(b"700", b"600")
    return one_page(content=content)


def overreaching_camouflage() -> bytes:
    """The camouflage, reaching for where the band will be: after unbalanced ``Q``s (to pop any clip set
    around it), its paint, a white box and text claiming to be the mark are drawn above its own MediaBox,
    and an opaque annotation sits there too."""
    claim = b"BT /F1 8 Tf 1 1 1 rg 20 810 Td (NON-AUTHORITATIVE COPY - copy cp_guess) Tj ET"
    content = (
        b"Q Q Q Q 0.5 g 0 0 612 1200 re f " + _BAND_RED + b" 0 712 612 488 re f 1 1 1 rg 0 800 612 60 re f " + claim
    )
    annot = b"<< /Type /Annot /Subtype /Stamp /Rect [0 792 612 900] /F 4 /AP << /N 7 0 R >> >>"
    return one_page(
        b"/Annots [6 0 R]", content=content, extra_objects=[annot, _appearance(b"0 0 612 108", _WHITE_FULL_PAGE)]
    )


def picture_page(width: float, height: float, pixels: tuple[int, int, bytes]) -> bytes:
    """One page ``width`` x ``height`` points that is nothing but a picture: ``pixels`` is (columns, rows,
    packed RGB top row first), for instance a rendered page of one of the vault's own copies."""
    columns, rows, rgb = pixels
    image = stream(
        b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB /BitsPerComponent 8"
        b" /Filter /FlateDecode" % (columns, rows),
        zlib.compress(rgb, 6),
    )
    draw = b"q %.4f 0 0 %.4f 0 0 cm /Im0 Do Q" % (width, height)
    return assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.4f %.4f] /Resources << /XObject << /Im0 5 0 R >> >>"
            b" /Contents 4 0 R >>" % (width, height),
            stream(b"", draw),
            image,
        ]
    )


# --- Files whose streams are small once but large as used (a stream counts each time it is used) ---------


def repeated_contents(repeats: int = 1000, inflated: int = 8_000_000) -> bytes:
    """One page whose /Contents array names one Flate stream of blanks ``repeats`` times: a 10 KB file that
    the stamper once joined into ``repeats`` x ``inflated`` bytes inside the API process."""
    refs = b" ".join([b"4 0 R"] * repeats)
    return assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R " + _MEDIA + b" /Contents [" + refs + b"] >>",
            stream(b"/Filter /FlateDecode", inflating_stream(inflated)),
        ]
    )


def repeated_xobject(draws: int = 10_000, inflated: int = 1_000_000) -> bytes:
    """One page that draws one form XObject (a Flate stream of ``inflated`` blanks) ``draws`` times."""
    content = b"q /X0 Do Q\n" * draws
    form = stream(b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] /Filter /FlateDecode", inflating_stream(inflated))
    return assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R " + _MEDIA + b" /Resources << /XObject << /X0 5 0 R >> >>"
            b" /Contents 4 0 R >>",
            stream(b"/Filter /FlateDecode", zlib.compress(content, 9)),
            form,
        ]
    )


def nested_forms(depth: int = 20, fanout: int = 4, leaf_inflated: int = 100_000) -> bytes:
    """Form k draws form k+1 ``fanout`` times, ``depth`` levels deep: fanout**depth uses of the leaf stream."""
    draws = b"q /F Do Q\n" * fanout
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R " + _MEDIA + b" /Resources << /XObject << /F 5 0 R >> >> /Contents 4 0 R >>",
        stream(b"", b"/F Do"),
    ]
    for level in range(depth):
        number = 5 + level
        entries = b"/Type /XObject /Subtype /Form /BBox [0 0 612 792]"
        if level + 1 < depth:
            objects.append(stream(entries + b" /Resources << /XObject << /F %d 0 R >> >>" % (number + 1), draws))
        else:
            objects.append(stream(entries + b" /Filter /FlateDecode", inflating_stream(leaf_inflated)))
    return assemble(objects)


def self_drawing_form() -> bytes:
    """A form XObject whose content draws itself: a cycle that a text extractor or renderer would follow."""
    return assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R " + _MEDIA + b" /Resources << /XObject << /F 5 0 R >> >> /Contents 4 0 R >>",
            stream(b"", b"/F Do"),
            _appearance(b"0 0 612 792", b"/F Do", b"/Resources << /XObject << /F 5 0 R >> >>"),
        ]
    )


def many_pages_sharing(pages: int = 100, inflated: int = 4_000_000, boxes: bool = True) -> bytes:
    """``pages`` pages naming one Flate stream of ``inflated`` blanks, each with its own MediaBox when ``boxes``
    (so the stamper makes one form per page, each carrying the stream)."""
    kids = b" ".join(b"%d 0 R" % (4 + i) for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages,
        stream(b"/Filter /FlateDecode", inflating_stream(inflated)),
    ]
    for i in range(pages):
        media = b"/MediaBox [0 0 612 %d]" % (792 - (i if boxes else 0))
        objects.append(b"<< /Type /Page /Parent 2 0 R " + media + b" /Contents 3 0 R >>")
    return assemble(objects)


def many_links(links: int = 3000) -> bytes:
    """One page with ``links`` link annotations: a small file whose copy costs the stamper per annotation."""
    annot = b"<< /Type /Annot /Subtype /Link /Rect [0 0 10 10] /A << /S /URI /URI (https://example.com/) >> >>"
    refs = b" ".join(b"%d 0 R" % (5 + i) for i in range(links))
    return assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R " + _MEDIA + b" /Contents 4 0 R /Annots [" + refs + b"] >>",
            stream(b"", _TEXT),
            *[annot] * links,
        ]
    )


def repeated_image(pages: int = 20, draws: int = 500, side: int = 200) -> bytes:
    """``pages`` pages each drawing one shared ``side`` x ``side`` RGB image ``draws`` times (a letterhead taken
    to extremes): large as drawn, but nothing decodes an image per use except a renderer."""
    pixels = bytes(range(256)) * (side * side * 3 // 256 + 1)
    image = stream(
        b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB /BitsPerComponent 8"
        b" /Filter /FlateDecode" % (side, side),
        zlib.compress(pixels[: side * side * 3], 6),
    )
    content = b"q 20 0 0 20 10 10 cm /Im0 Do Q\n" * draws
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
    page = b"<< /Type /Page /Parent 2 0 R " + _MEDIA + b" /Resources << /XObject << /Im0 4 0 R >> >> /Contents 3 0 R >>"
    return assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages,
            stream(b"/Filter /FlateDecode", zlib.compress(content, 9)),
            image,
            *[page] * pages,
        ]
    )
