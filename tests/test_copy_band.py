"""A mark no page can imitate: the copy's band lies outside the original's box, so every copied page renders
differently from its original (at least 2% of its pixels) and names its copy in the band, whatever the
original draws; a mark drawn over the page fails the same check.

Pixels are compared in full here (``tests/rendering.py``: both pages rendered by pdfium), independently of the
issuance check (``compliance.conditions.mark_check``), which renders only the band.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from collections.abc import Callable

import pypdfium2 as pdfium
import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, DecodedStreamObject, DictionaryObject, NameObject

from compliance.conditions.copy_mark import (
    BAND_MIN_HEIGHT,
    CopyMark,
    band_for_original,
    band_height,
    unmarked_pages,
)
from compliance.conditions.mark_check import MIN_DIFFERENCE, check_copy
from storage.settings import PdfSettings
from tests import hostile_pdfs, pdf_factory, rendering
from vault.copy_stamp import mark_objects, stamp_copy
from vault.pdf_inspect import inspect_pdf
from vault.stamp_worker import StampLimits, run_stamp
from vault.worker_pool import StampFailure

pytestmark = pytest.mark.once  # independent of the database under test: the SQLite pass only

_ISSUED = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


def _mark(source: bytes, copy_id: str = "cp_01JBANDTEST0000000000") -> CopyMark:
    return CopyMark(copy_id, "env_band", hashlib.sha256(source).hexdigest(), _ISSUED)


def _picture_of_a_copy() -> bytes:
    """An original that is a full-page picture of one of the vault's own copies (rendered at 72 dpi)."""
    source = pdf_factory.make_pdf(pages=1)
    copy = stamp_copy(source, _mark(source, "cp_01JPICTUREDCOPY000000"))
    width, height = PdfReader(io.BytesIO(copy)).pages[0].mediabox[2:]
    return hostile_pdfs.picture_page(float(width), float(height), rendering.rgb(copy, 0))


CORPUS: dict[str, Callable[[], bytes]] = {
    "camouflage": hostile_pdfs.camouflage,
    "overreaching-camouflage": hostile_pdfs.overreaching_camouflage,
    "picture-of-a-copy": _picture_of_a_copy,
    "covering-annotation": hostile_pdfs.covering_annotation,
    "painting-link": hostile_pdfs.painting_link,
    "odd-cropbox": hostile_pdfs.odd_cropbox,
    "rotated-cropped": hostile_pdfs.rotated_cropped_page,
    "hiding-optional-content": hostile_pdfs.hiding_optional_content,
    "deep-reference-chain": hostile_pdfs.deep_reference_chain,
    "object-stream-loop": hostile_pdfs.object_stream_loop,
    "shared-content": lambda: hostile_pdfs.shared_content(3),
    "landscape-rotated-cropped": pdf_factory.make_landscape_and_rotated_pdf,
    "rotate-180": lambda: hostile_pdfs.one_page(b"/Rotate 180 /CropBox [20 30 500 700]"),
    "rotate-minus-90": lambda: hostile_pdfs.one_page(b"/Rotate -90"),
    "rotate-minus-135": lambda: hostile_pdfs.one_page(b"/Rotate -135"),
    "rotate-450": lambda: hostile_pdfs.one_page(b"/Rotate 450"),
    "cropbox-outside-mediabox": lambda: hostile_pdfs.one_page(b"/CropBox [700 800 900 1000]"),
    "narrow-tall": lambda: pdf_factory.make_pdf(pages=1, page_size=(200.0, 3000.0)),
}


@pytest.mark.parametrize("name", CORPUS)
def test_every_copied_page_differs_from_its_original_and_names_its_copy_in_the_band(name: str) -> None:
    source = CORPUS[name]()
    inspect_pdf(source, PdfSettings())  # vault-in accepts it
    mark = _mark(source)
    copy = stamp_copy(source, mark)
    check = check_copy(source, copy, mark.copy_id)
    assert check.passed, check
    pages = len(PdfReader(io.BytesIO(source)).pages)
    assert len(check.pages) == pages
    for index in range(pages):
        measured = rendering.difference(source, copy, index)
        assert measured >= MIN_DIFFERENCE, (index, measured)
        assert check.pages[index].difference <= measured + 0.002  # the check's number is a lower bound
    assert unmarked_pages(copy, mark.copy_id) == []
    assert check_copy(source, copy, "cp_someoneelse").failed_pages == list(range(1, pages + 1))


@pytest.mark.parametrize("dpi", [72, 216])
def test_camouflage_renders_differently_at_the_findings_resolutions(dpi: int) -> None:
    source = hostile_pdfs.camouflage()
    copy = stamp_copy(source, _mark(source))
    assert rendering.difference(source, copy, 0, dpi) >= MIN_DIFFERENCE


def _drawn_over_the_page(source: bytes, mark: CopyMark) -> bytes:
    """Last round's mark, drawn over the page in its own box: red 8 pt lines at the top and a faint grey COPY."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(source)))
    font, light = mark_objects()
    for page in writer.pages:
        resources = page["/Resources"].get_object()
        resources[NameObject("/Font")][NameObject("/M")] = writer._add_object(font)
        resources[NameObject("/ExtGState")] = DictionaryObject({NameObject("/L"): writer._add_object(light)})
        text = " 0 -10 Td ".join(f"({line}) Tj" for line in mark.lines())
        top = float(page.mediabox[3])
        overlay = DecodedStreamObject()
        overlay.set_data(
            f"q /L gs BT /M 200 Tf 0.5 0.5 0.5 rg 0.7 0.7 -0.7 0.7 150 150 Tm (COPY) Tj ET Q\n"
            f"q BT /M 8 Tf 0.65 0 0 rg 18 {top - 26} Td {text} ET Q\n".encode()
        )
        page[NameObject("/Contents")] = ArrayObject([page.raw_get("/Contents"), writer._add_object(overlay)])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_mark_drawn_over_the_page_fails_the_check() -> None:
    source = hostile_pdfs.camouflage()
    mark = _mark(source)
    over = _drawn_over_the_page(source, mark)
    assert "NON-AUTHORITATIVE COPY" in PdfReader(io.BytesIO(over)).pages[0].extract_text()  # the text is there
    for dpi in (72, 216):
        assert rendering.difference(source, over, 0, dpi) < 0.01  # but it does not show
    check = check_copy(source, over, mark.copy_id)
    assert not check.passed and check.failed_pages == [1]
    # Its text sits in the top 40 pt, where the band would be, but the page is no bigger than the original's:
    # nothing proves it differs, and on pixels it does not.
    assert not check.pages[0].geometry and check.pages[0].difference == 0


def test_band_geometry_is_as_documented() -> None:
    """40 pt up to an original 960 pt tall, then a twenty-fourth of it; the copy's rule gives the same band."""
    for height, band in [(100.0, 40.0), (792.0, 40.0), (960.0, 40.0), (1200.0, 50.0), (3000.0, 125.0)]:
        assert band_for_original(height) == pytest.approx(band)
        assert band_height(height + band) == pytest.approx(band)
    assert BAND_MIN_HEIGHT == 40.0
    source = pdf_factory.make_pdf(pages=1)  # Letter
    copy = stamp_copy(source, _mark(source))
    page = PdfReader(io.BytesIO(copy)).pages[0]
    assert [float(v) for v in page.mediabox] == [0, 0, 612, 832]
    assert [float(v) for v in page.cropbox] == [0, 0, 612, 832]
    document = pdfium.PdfDocument(copy)
    try:
        textpage = document[0].get_textpage()
        band_text = textpage.get_text_bounded(0, 792, 612, 832)
        below = textpage.get_text_bounded(0, 0, 612, 792)
        textpage.close()
    finally:
        document.close()
    assert "NON-AUTHORITATIVE COPY" in band_text and "cp_01JBANDTEST0000000000" in band_text
    assert "NON-AUTHORITATIVE COPY" not in below


def test_the_stamper_process_checks_the_copy_it_makes() -> None:
    source = hostile_pdfs.camouflage()
    mark = _mark(source)
    outcome = run_stamp(source, mark, StampLimits.from_settings(PdfSettings()))
    assert outcome.check.passed and outcome.check.min_difference >= MIN_DIFFERENCE
    assert check_copy(source, outcome.pdf, mark.copy_id).passed


def test_checking_a_dense_page_stays_within_the_stampers_limits() -> None:
    """pdfium holds a parsed page in memory: under the stamper's limits a dense page (13 MB of content) is
    checked, and under a tighter address space it is a memory failure, not a crash read as a malformed file."""
    source = hostile_pdfs.dense_page(1_000_000)
    mark = _mark(source)
    limits = StampLimits.from_settings(PdfSettings())
    outcome = run_stamp(source, mark, limits, keep=False)
    assert outcome.check.passed
    assert outcome.peak_rss_bytes < limits.memory_bytes and outcome.cpu_seconds <= limits.cpu_seconds
    with pytest.raises(StampFailure) as info:
        run_stamp(source, mark, StampLimits(256 * 1024 * 1024, 30, 60.0), keep=False)
    assert info.value.kind == "memory"


def test_unreadable_files_fail_the_check() -> None:
    source = pdf_factory.make_pdf(pages=2)
    copy = stamp_copy(source, _mark(source))
    assert check_copy(b"%PDF-1.7 garbage", copy, "cp_x").error is not None
    assert check_copy(source, b"%PDF-1.7 garbage", "cp_x").error is not None
    assert not check_copy(pdf_factory.make_pdf(pages=3), copy, "cp_x").passed  # page counts differ
