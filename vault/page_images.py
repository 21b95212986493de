"""The pages of a document to sign, as PNG images for the signing page (pdfium renders, zlib encodes).

The signer's browser needs no PDF viewer and runs no PDF code: the service renders each page once per request
at a width fit for a screen, in greyscale. pdfium is not thread-safe, so renders take one lock per process;
a page is capped in pixels, so a huge page box costs no more than a normal one. The document was vetted when
it was staged for signing, like any upload.

The PNG is written here (signature, IHDR, one IDAT, IEND: a few lines) rather than through an imaging library
the service would otherwise not need.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import zlib
from collections import OrderedDict

import pypdfium2 as pdfium

from compliance.errors import NotFound

TARGET_WIDTH = 1000  # pixels: a page's width on the signing page
MAX_PIXELS = 4_000_000  # per page, whatever its box
CACHED_PAGES = 64  # the last pages rendered, by document digest and number (a page's images load together)
_LOCK = threading.Lock()
_CACHE: OrderedDict[tuple[bytes, int], bytes] = OrderedDict()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def grey_png(width: int, height: int, stride: int, pixels: bytes) -> bytes:
    """An 8-bit greyscale PNG of ``height`` rows of ``width`` bytes, each row ``stride`` bytes apart."""
    rows = b"".join(b"\x00" + pixels[y * stride : y * stride + width] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows, 6)) + _chunk(b"IEND", b"")
    )


def _scale(width_pt: float, height_pt: float) -> float:
    scale = TARGET_WIDTH / max(width_pt, 1.0)
    if width_pt * height_pt * scale * scale > MAX_PIXELS:
        scale = (MAX_PIXELS / max(width_pt * height_pt, 1.0)) ** 0.5
    return scale


def page_count(pdf: bytes) -> int:
    with _LOCK:
        document = pdfium.PdfDocument(pdf)
        try:
            return len(document)
        finally:
            document.close()


def render_page(pdf: bytes, number: int) -> bytes:
    """Page ``number`` (1-based) as a PNG; ``Signing.PageNotFound`` outside the document.

    Cached by the document's digest: a document to sign never changes, and its pages are asked for together.
    """
    key = (hashlib.sha256(pdf).digest(), number)
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        png = _render(pdf, number)
        _CACHE[key] = png
        if len(_CACHE) > CACHED_PAGES:
            _CACHE.popitem(last=False)
        return png


def _render(pdf: bytes, number: int) -> bytes:
    """Under ``_LOCK``."""
    document = pdfium.PdfDocument(pdf)
    try:
        if not 1 <= number <= len(document):
            raise NotFound("Signing.PageNotFound", f"the document has no page {number}", pages=len(document))
        page = document[number - 1]
        width, height = page.get_size()
        bitmap = page.render(scale=_scale(width, height), grayscale=True, may_draw_forms=True)
        try:
            return grey_png(bitmap.width, bitmap.height, bitmap.stride, bytes(bitmap.buffer))
        finally:
            bitmap.close()
            page.close()
    finally:
        document.close()
