"""Rendering pages with pdfium (as a viewer would) and comparing a copy's page with its original's, pixel by pixel.

The comparison is done in full here, independent of ``compliance.conditions.mark_check`` (which renders only
the band): the original's page is rendered, placed at the bottom left of a white canvas the size of the copy's
page (the band is above it), and every pixel is compared with the copy's rendering.
"""

from __future__ import annotations

import pypdfium2 as pdfium

DIFFERENT = 31  # grey levels: a pixel differs when the two renderings are further apart than this


def gray(pdf: bytes, index: int, dpi: float = 72) -> tuple[int, int, list[bytes]]:
    """Width, height and rows (top to bottom, one byte per pixel) of page ``index`` rendered at ``dpi``."""
    document = pdfium.PdfDocument(pdf)
    try:
        page = document[index]
        bitmap = page.render(scale=dpi / 72, grayscale=True, may_draw_forms=True)
        width, height, stride = bitmap.width, bitmap.height, bitmap.stride
        buffer = bytes(bitmap.buffer)
        page.close()
    finally:
        document.close()
    return width, height, [buffer[row * stride : row * stride + width] for row in range(height)]


def rgb(pdf: bytes, index: int, dpi: float = 72) -> tuple[int, int, bytes]:
    """Width, height and packed RGB bytes (top row first) of page ``index`` rendered at ``dpi``."""
    document = pdfium.PdfDocument(pdf)
    try:
        page = document[index]
        bitmap = page.render(scale=dpi / 72, rev_byteorder=True)
        width, height, stride, channels = bitmap.width, bitmap.height, bitmap.stride, bitmap.n_channels
        buffer = bytes(bitmap.buffer)
        page.close()
    finally:
        document.close()
    rows = (buffer[row * stride : row * stride + width * channels] for row in range(height))
    pixels = b"".join(bytes(v for i, v in enumerate(row) if i % channels < 3) for row in rows)
    return width, height, pixels


def _differing(row: bytes, other: bytes) -> int:
    if row == other:
        return 0
    return sum(1 for a, b in zip(row, other, strict=True) if a - b > DIFFERENT or b - a > DIFFERENT)


def on_canvas(original: bytes, index: int, width: int, height: int, dpi: float = 72) -> list[bytes]:
    """The original page's rendering placed at the bottom left of a white ``width`` x ``height`` canvas (all
    white if the page displays as nothing, such as a CropBox outside its MediaBox)."""
    document = pdfium.PdfDocument(original)
    shows_nothing = min(document.get_page_size(index)) <= 1  # pdfium cannot even make a bitmap of it
    document.close()
    _, source_height, source_rows = (0, 0, []) if shows_nothing else gray(original, index, dpi)
    offset = max(0, height - source_height)
    white = b"\xff" * width
    rows = [source_rows[row - offset] if 0 <= row - offset < source_height else b"" for row in range(height)]
    return [(row + white)[:width] for row in rows]


def difference(original: bytes, copy: bytes, index: int, dpi: float = 72) -> float:
    """Share of the copy page's pixels that differ from the original page's, the original placed below the band."""
    width, height, copy_rows = gray(copy, index, dpi)
    source_rows = on_canvas(original, index, width, height, dpi)
    return sum(map(_differing, copy_rows, source_rows)) / (width * height)
