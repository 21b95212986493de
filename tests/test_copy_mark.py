"""Stamped copies carry the mark on every page, do not pose as signed, and leave the source untouched."""

from __future__ import annotations

import datetime as dt
import hashlib
import io

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pypdf import PdfReader

from compliance.conditions.copy_mark import CopyMark, unmarked_pages
from tests import pdf_factory
from vault.copy_stamp import stamp_copy

pytestmark = pytest.mark.once  # independent of the database under test: the SQLite pass only

_ISSUED = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


def _mark(source: bytes) -> CopyMark:
    return CopyMark("copy_01J9ZK3", "env_7f3a", hashlib.sha256(source).hexdigest(), _ISSUED)


def _assert_marked_everywhere(copy: bytes, mark: CopyMark, pages: int) -> None:
    reader = PdfReader(io.BytesIO(copy))
    assert len(reader.pages) == pages
    for number, page in enumerate(reader.pages, start=1):
        text = page.extract_text()
        for expected in (
            "NON-AUTHORITATIVE COPY",
            "This is not the authoritative copy",
            mark.copy_id,
            f"source SHA-256: {mark.source_sha256}",
            "issued 2026-03-04T05:06:07Z",
        ):
            assert expected in text, (number, expected, text)
    assert unmarked_pages(copy, mark.copy_id) == []


def test_mark_lines_carry_every_required_fact() -> None:
    mark = _mark(b"x")
    text = "\n".join(mark.lines())
    assert "NON-AUTHORITATIVE COPY" in text
    assert "This is not the authoritative copy" in text
    assert mark.copy_id in text and mark.envelope_id in text
    assert f"source SHA-256: {mark.source_sha256}" in text
    assert "issued 2026-03-04T05:06:07Z" in text


@pytest.mark.parametrize("pages", [5, 20])
def test_every_page_is_marked_and_original_text_kept(pages: int) -> None:
    source = pdf_factory.make_pdf(pages=pages)
    original = bytes(source)
    mark = _mark(source)
    copy = stamp_copy(source, mark)

    _assert_marked_everywhere(copy, mark, pages)
    assert "Loan agreement - page 3" in PdfReader(io.BytesIO(copy)).pages[2].extract_text()
    assert source == original
    assert copy != source
    assert hashlib.sha256(copy).hexdigest() != mark.source_sha256


def test_landscape_rotated_and_cropped_pages_are_marked() -> None:
    source = pdf_factory.make_landscape_and_rotated_pdf()
    mark = _mark(source)
    copy = stamp_copy(source, mark)
    _assert_marked_everywhere(copy, mark, 3)
    reader = PdfReader(io.BytesIO(copy))
    assert reader.pages[1].rotation == 90
    # The page grew by the 40 pt band above its CropBox (which the copy's boxes all equal now).
    assert list(map(float, reader.pages[2].cropbox)) == [50, 50, 400, 640]
    assert list(map(float, reader.pages[2].mediabox)) == [50, 50, 400, 640]


def test_copy_of_signed_pdf_does_not_pose_as_signed() -> None:
    source = pdf_factory.make_signed_pdf(pages=2)
    original = bytes(source)
    mark = _mark(source)
    copy = stamp_copy(source, mark)

    reader = PdfFileReader(io.BytesIO(copy))
    assert reader.embedded_signatures == []
    assert "/AcroForm" not in reader.root
    assert b"/ByteRange" not in copy  # the CMS blob is not carried along as an orphan either
    assert all("/Annots" not in PdfReader(io.BytesIO(copy)).pages[i] for i in range(2))
    _assert_marked_everywhere(copy, mark, 2)
    assert source == original
    assert len(PdfFileReader(io.BytesIO(source)).embedded_signatures) == 1


def test_document_info_names_the_copy() -> None:
    source = pdf_factory.make_pdf()
    mark = _mark(source)
    meta = PdfReader(io.BytesIO(stamp_copy(source, mark))).metadata
    assert meta is not None and meta.title and meta.subject
    assert "NON-AUTHORITATIVE COPY" in meta.title and mark.copy_id in meta.title
    assert mark.copy_id in meta.subject and mark.source_sha256 in meta.subject


@pytest.mark.parametrize(
    ("sha", "issued"),
    [
        ("ab" * 31, _ISSUED),
        ("AB" * 32, _ISSUED),
        ("ab" * 32, _ISSUED.replace(tzinfo=None)),
        ("ab" * 32, _ISSUED.astimezone(dt.timezone(dt.timedelta(hours=2)))),
    ],
)
def test_mark_refuses_bad_hash_or_non_utc_time(sha: str, issued: dt.datetime) -> None:
    with pytest.raises(ValueError):
        CopyMark("c", "e", sha, issued)


def test_special_characters_in_ids_are_escaped() -> None:
    source = pdf_factory.make_pdf(pages=1)
    mark = CopyMark(r"c(1)\x", "env", hashlib.sha256(source).hexdigest(), _ISSUED)
    assert r"c(1)\x" in PdfReader(io.BytesIO(stamp_copy(source, mark))).pages[0].extract_text()


def test_long_hash_fits_on_a_narrow_page() -> None:
    source = pdf_factory.make_pdf(pages=1, page_size=(200.0, 500.0))
    mark = _mark(source)
    page = PdfReader(io.BytesIO(stamp_copy(source, mark))).pages[0]
    placed: list[tuple[str, float, float]] = []

    def visit(text: str, cm: list[float], tm: list[float], font: object, size: float) -> None:
        if "SHA-256" in text:
            placed.append((text, cm[4] + tm[4], size))

    page.extract_text(visitor_text=visit)
    (text, x, size), *_ = placed
    assert x > 0
    # Helvetica: "source SHA-256: " is under 8.5 em, and digits and a-f are at most 0.556 em wide.
    assert text.endswith(mark.source_sha256)
    assert x + size * (8.5 + 0.556 * 64) <= 200


def test_recogniser_names_unmarked_pages_and_unreadable_files() -> None:
    source = pdf_factory.make_pdf(pages=3)
    assert unmarked_pages(source, "cp_anything") == [1, 2, 3]
    copy = stamp_copy(source, _mark(source))
    assert unmarked_pages(copy, "cp_someother") == [1, 2, 3]
    assert unmarked_pages(b"%PDF-1.7 garbage", "cp_x") == [0]
