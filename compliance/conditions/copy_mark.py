"""The mark every non-authoritative copy carries: what it says, where it sits, and how a checker recognises it.

Under UCC 9-105 every copy must be readily identifiable as a copy. A mark drawn over the page can be
camouflaged by the page itself (a grey page hides a faint watermark, a red header bar hides red text), so the
mark lives where the original cannot draw: each copy page is the original's visible box grown by a **band**
on the side that displays at the top, and the original's content is clipped to its own box. The vault stamps
it (``vault/copy_stamp.py``); the compliance check and the nightly verifier recognise it here, from the
copy's own text inside the band, without trusting the register that says which copies exist.

Geometry (PDF points, display orientation, that is after ``/Rotate``): a copy page displayed ``C`` tall has a
band of height ``band_height(C) = max(40, C / 25)`` across its full width at the top. An original displayed
``h`` tall therefore gets ``band_for_original(h) = max(40, h / 24)``, which makes both rules agree.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any

from pypdf import PageObject, PdfReader

from compliance.pdf_bytes import PdfBytes

_HEX64 = re.compile(r"[0-9a-f]{64}")
HEADLINE = "NON-AUTHORITATIVE COPY"
BAND_MIN_HEIGHT = 40.0  # points: three lines of ~9 pt text with their margins
BAND_SHARE = 25  # the band is at least 1/25 (4%) of the copy's displayed height
BAND_RGB = (0.65, 0.0, 0.0)  # the band's fill; its text is white
_SLACK = 1.0  # points: rounding of written boxes, so text on the band's edge still counts

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class CopyMark:
    """Identity of one issued copy; its text is printed in the band of every page of that copy."""

    copy_id: str
    envelope_id: str
    source_sha256: str
    issued_at: dt.datetime
    certified: bool = False  # a certified copy: still not the authoritative copy, and says so first

    def __post_init__(self) -> None:
        if not _HEX64.fullmatch(self.source_sha256):
            raise ValueError("source_sha256 must be 64 lower-case hex digits")
        if self.issued_at.utcoffset() != dt.timedelta(0):
            raise ValueError("issued_at must be an aware UTC datetime")

    @property
    def issued_iso(self) -> str:
        return self.issued_at.strftime("%Y-%m-%dT%H:%M:%SZ")

    def lines(self) -> list[str]:
        """The band's lines; the hash gets its own line so it can be compared with the vault's record."""
        what = "CERTIFIED COPY, not the authoritative copy" if self.certified else "This is not the authoritative copy"
        return [
            f"{HEADLINE} - {what}",
            f"copy {self.copy_id} of envelope {self.envelope_id}, issued {self.issued_iso}",
            f"source SHA-256: {self.source_sha256}",
        ]


def band_height(copy_height: float) -> float:
    """The band's height on a copy page displayed ``copy_height`` points tall."""
    return max(BAND_MIN_HEIGHT, copy_height / BAND_SHARE)


def band_for_original(height: float) -> float:
    """The band added above an original page displayed ``height`` tall (so that it equals ``band_height``)."""
    return max(BAND_MIN_HEIGHT, height / (BAND_SHARE - 1))


def box(value: Any) -> Box | None:
    """A rectangle as (x0, y0, x1, y1) with x0 < x1 and y0 < y1, or None if it is not a usable one."""
    try:
        x0, y0, x1, y1 = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    rect = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    return rect if all(math.isfinite(v) for v in rect) and rect[2] - rect[0] > 1 and rect[3] - rect[1] > 1 else None


def visible_box(page: PageObject) -> Box:
    """What a viewer shows: the CropBox clipped to the MediaBox (the file may say anything about either)."""
    media = box(page.get("/MediaBox")) or (0.0, 0.0, 612.0, 792.0)
    crop = box(page.get("/CropBox")) or media
    inter = (max(media[0], crop[0]), max(media[1], crop[1]), min(media[2], crop[2]), min(media[3], crop[3]))
    return inter if inter[2] - inter[0] > 1 and inter[3] - inter[1] > 1 else media


def rotation(page: PageObject) -> int:
    """/Rotate as 0, 90, 180 or 270, read the way pdfium reads it (whole quarter turns, clockwise)."""
    try:
        degrees = int(page.get("/Rotate", 0))
    except (TypeError, ValueError, OverflowError):
        return 0
    quarters = abs(degrees) // 90 * (1 if degrees >= 0 else -1)  # C's division, as pdfium does it
    return quarters % 4 * 90


def display_size(rect: Box, turn: int) -> tuple[float, float]:
    """Width and height of ``rect`` as displayed with /Rotate ``turn``."""
    w, h = rect[2] - rect[0], rect[3] - rect[1]
    return (h, w) if turn in (90, 270) else (w, h)


def copy_box(original: Box, turn: int) -> Box:
    """The copy page's box: the original's visible box grown by the band on the side displayed at the top."""
    x0, y0, x1, y1 = original
    band = band_for_original(display_size(original, turn)[1])
    grown = {0: (x0, y0, x1, y1 + band), 90: (x0 - band, y0, x1, y1), 180: (x0, y0 - band, x1, y1)}
    return grown.get(turn, (x0, y0, x1 + band, y1))


def band_rect(copy: Box, turn: int) -> Box:
    """The band of a copy page whose box is ``copy``, in the page's own (unrotated) coordinates."""
    x0, y0, x1, y1 = copy
    band = band_height(display_size(copy, turn)[1])
    rects = {0: (x0, y1 - band, x1, y1), 90: (x0, y0, x0 + band, y1), 180: (x0, y0, x1, y0 + band)}
    return rects.get(turn, (x1 - band, y0, x1, y1))


def _band_text(page: PageObject) -> str:
    """The text whose starting point lies in the page's band (pypdf reports where each piece of text starts)."""
    x0, y0, x1, y1 = band_rect(visible_box(page), rotation(page))
    found: list[str] = []

    def visit(text: str, cm: list[float], tm: list[float], _font: object, _size: float) -> None:
        x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
        y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        if x0 - _SLACK <= x <= x1 + _SLACK and y0 - _SLACK <= y <= y1 + _SLACK:
            found.append(text)

    page.extract_text(visitor_text=visit)
    return "".join(found)


def unmarked_pages(pdf: bytes, copy_id: str) -> list[int]:
    """1-based numbers of the pages whose band lacks the headline or the copy's id; ``[0]`` if unreadable.

    Only text that starts inside the band counts: a page that merely contains the words elsewhere (an
    original that is a picture or a transcript of some copy) is not marked."""
    try:
        reader = PdfReader(PdfBytes(pdf))
        texts = [_band_text(page) for page in reader.pages]
    except Exception:  # any parser failure means the mark cannot be shown to be there
        return [0]
    missing = [n for n, text in enumerate(texts, start=1) if HEADLINE not in text or copy_id not in text]
    return missing if texts else [0]
