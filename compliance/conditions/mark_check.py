"""The issuance check of a copy's mark, on pixels and on the text a viewer (pdfium) finds in the band.

A copy passes when, on every page:

- its geometry is the mark's: the copy page displays as wide as the original page and exactly
  ``band_for_original(h)`` taller (``copy_mark`` defines the band), with the same number of pages; an
  original page that pdfium displays as nothing (under 1 pt either way) has nothing to compare, and its copy
  page is held to the band alone;
- the rendered copy differs from the rendered original in at least ``MIN_DIFFERENCE`` of its pixels. The
  comparison places the original's rendering below the band on a canvas of the copy's size, white (unpainted
  paper) elsewhere, and counts a pixel as different when its grey level differs by more than 31 of 255. The
  band lies outside the original's box, where the original has nothing but paper, so the band's non-white
  pixels are a lower bound of that count: only the copy's band strip is rendered, never a whole page twice;
- the copy's id and the headline are in the text pdfium extracts from the band's rectangle alone.

Run it where a hostile file is allowed to be: the stamper's child process (``vault.stamp_worker``), under its
memory and CPU limits.
"""

from __future__ import annotations

from dataclasses import dataclass

import pypdfium2 as pdfium

from compliance.conditions.copy_mark import HEADLINE, band_for_original, band_height, band_rect, box

MIN_DIFFERENCE = 0.02
RENDER_SCALE = 0.5  # 36 dpi: the band is 40 pt or more, so at least 20 pixel rows
_TOLERANCE = 0.5  # points: the copy's boxes are written to four decimals
_DIFFERENT = bytes(0 if level < 224 else 1 for level in range(256))  # 0: more than 31 below white


@dataclass(frozen=True)
class PageCheck:
    """One page's verdict and the numbers behind it."""

    page: int  # 1-based
    geometry: bool  # the copy page is the original page plus the band, nothing else
    difference: float  # share of the copy's pixels proven to differ from the original's (0 unless geometry)
    id_in_band: bool  # the headline and the copy id are text inside the band

    @property
    def passed(self) -> bool:
        return self.geometry and self.difference >= MIN_DIFFERENCE and self.id_in_band


@dataclass(frozen=True)
class MarkCheck:
    """The whole copy's verdict: every page passes, or ``error`` says why the files could not be compared."""

    pages: tuple[PageCheck, ...]
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.pages) and all(page.passed for page in self.pages)

    @property
    def failed_pages(self) -> list[int]:
        return [page.page for page in self.pages if not page.passed]

    @property
    def min_difference(self) -> float:
        return min((page.difference for page in self.pages), default=0.0)

    def summary(self) -> str:
        if self.error is not None:
            return self.error
        return f"pages {self.failed_pages[:20]} fail; smallest difference {self.min_difference:.4f}"


def _band_difference(page: pdfium.PdfPage, width: float, height: float, band: float) -> float:
    """Non-white pixels of the band strip, as a share of the whole copy page's pixels."""
    bitmap = page.render(scale=RENDER_SCALE, grayscale=True, crop=(0, height - band, 0, 0), may_draw_forms=False)
    rows, columns, stride = bitmap.height, bitmap.width, bitmap.stride
    buffer = bytes(bitmap.buffer)
    strip = b"".join(buffer[row * stride : row * stride + columns] for row in range(rows))
    return strip.translate(_DIFFERENT).count(0) / (width * height * RENDER_SCALE * RENDER_SCALE)


def _check_page(original: pdfium.PdfDocument, copy: pdfium.PdfDocument, index: int, copy_id: str) -> PageCheck:
    source_width, source_height = original.get_page_size(index)
    page = copy[index]
    try:
        width, height = page.get_size()
        band = band_height(height)
        shows_nothing = source_width <= 1 or source_height <= 1  # e.g. a CropBox outside the MediaBox
        geometry = shows_nothing or (
            abs(width - source_width) <= _TOLERANCE
            and abs(height - source_height - band_for_original(source_height)) <= _TOLERANCE
        )
        difference = _band_difference(page, width, height, band) if geometry else 0.0
        rect = box(page.get_cropbox())
        text = ""
        if rect is not None:
            x0, y0, x1, y1 = band_rect(rect, page.get_rotation() % 360)
            textpage = page.get_textpage()
            try:
                text = textpage.get_text_bounded(x0, y0, x1, y1)
            finally:
                textpage.close()
        return PageCheck(index + 1, geometry, difference, HEADLINE in text and copy_id in text)
    finally:
        page.close()


def check_copy(original: bytes, copy: bytes, copy_id: str) -> MarkCheck:
    """Whether ``copy`` carries copy ``copy_id``'s mark where ``original`` cannot imitate it, page by page."""
    try:
        source = pdfium.PdfDocument(original)
    except pdfium.PdfiumError as exc:
        return MarkCheck((), f"the original cannot be opened: {exc}")
    try:
        try:
            made = pdfium.PdfDocument(copy)
        except pdfium.PdfiumError as exc:
            return MarkCheck((), f"the copy cannot be opened: {exc}")
        try:
            if len(made) != len(source):
                return MarkCheck((), f"the copy has {len(made)} pages, the original {len(source)}")
            return MarkCheck(tuple(_check_page(source, made, index, copy_id) for index in range(len(made))))
        finally:
            made.close()
    finally:
        source.close()
