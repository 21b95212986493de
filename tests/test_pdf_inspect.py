"""inspect_pdf accepts good PDFs with the right facts and refuses each kind of bad upload with its code."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader

from compliance.errors import InvalidInput
from storage.settings import Settings, SettingsError
from tests import pdf_factory
from vault.pdf_inspect import PdfFacts, inspect_pdf

pytestmark = pytest.mark.once  # independent of the database under test: the SQLite pass only


def _code(data: bytes) -> str:
    with pytest.raises(InvalidInput) as info:
        inspect_pdf(data)
    return info.value.code


def test_good_pdf_facts() -> None:
    assert inspect_pdf(pdf_factory.make_pdf(pages=7)) == PdfFacts(page_count=7, signature_count=0, pdf_version="1.3")


def test_padded_1mib_pdf_is_accepted() -> None:
    data = pdf_factory.make_pdf(pages=2, size_bytes=1 << 20)
    assert len(data) == 1 << 20
    assert inspect_pdf(data).page_count == 2


def test_signed_pdf_counts_its_signature() -> None:
    facts = inspect_pdf(pdf_factory.make_signed_pdf(pages=3))
    assert (facts.page_count, facts.signature_count) == (3, 1)


def test_signed_then_modified_pdf_is_still_a_readable_pdf() -> None:
    assert inspect_pdf(pdf_factory.make_signed_then_modified_pdf()).signature_count == 1


def test_empty() -> None:
    assert _code(b"") == "Document.Empty"


@pytest.mark.parametrize("data", [b"hello world", b"\x89PNG\r\n\x1a\n" + bytes(100), b" %PDF-1.7\n"])
def test_not_pdf(data: bytes) -> None:
    assert _code(data) == "Document.NotPdf"


@pytest.mark.parametrize("make", [pdf_factory.make_encrypted_pdf, pdf_factory.make_encrypted_pdf_empty_password])
def test_encrypted(make: Callable[[], bytes]) -> None:
    assert _code(make()) == "Document.Encrypted"


@pytest.mark.parametrize(
    "data",
    [
        pdf_factory.truncate(pdf_factory.make_pdf(pages=3)),
        pdf_factory.make_pdf().replace(b"%%EOF", b""),
        b"%PDF-1.7\n" + b"garbage " * 200,
        b"%PDF-",
    ],
    ids=["truncated", "no-eof", "garbage", "header-only"],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(InvalidInput) as info:
        inspect_pdf(data)
    assert info.value.code == "Document.Malformed"
    assert info.value.details["parser_error"]


def test_truncated_signed_pdf_is_malformed() -> None:
    """pypdf would open this silently as the unsigned first revision; the vault must refuse it."""
    signed = pdf_factory.make_signed_pdf()
    assert _code(pdf_factory.truncate(signed)) == "Document.Malformed"
    assert _code(signed[:-40]) == "Document.Malformed"


def test_broken_xref_is_malformed() -> None:
    data = pdf_factory.make_pdf(pages=2)
    start = data.rindex(b"startxref") + len(b"startxref\n")
    end = data.index(b"\n", start)
    assert _code(data[:start] + b"99" + data[end:]) == "Document.Malformed"


def test_zero_pages_is_malformed() -> None:
    data = pdf_factory.make_pdf(pages=1).replace(b"/Count 1", b"/Count 0")
    start = data.index(b"/Kids [") + len(b"/Kids [")
    end = data.index(b"]", start)
    data = data[:start] + b" " * (end - start) + data[end:]  # same length: the xref offsets stay right
    with pytest.raises(InvalidInput, match="no pages") as info:
        inspect_pdf(data)
    assert info.value.code == "Document.Malformed"


def test_pyhanko_logs_are_silenced_only_inside_inspection(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    data = pdf_factory.make_pdf()
    at = data.rindex(b"startxref\n")
    sloppy = data[:at] + b"startxref " + data[at + len(b"startxref\n") :]  # pyHanko warns, then reads it

    assert inspect_pdf(sloppy).page_count == 2
    with pytest.raises(InvalidInput):
        inspect_pdf(pdf_factory.truncate(pdf_factory.make_signed_pdf()))
    assert not [r for r in caplog.records if r.name.startswith("pyhanko")]

    PdfFileReader(io.BytesIO(sloppy))
    assert [r for r in caplog.records if r.name == "pyhanko.pdf_utils.reader"]


def test_pdf_budget_is_read_from_the_environment() -> None:
    pdf = Settings.from_env({"EVAULT_PDF_MAX_PAGES": "7", "EVAULT_PDF_MAX_DECODED_BYTES": str(1 << 21)}).pdf
    assert (pdf.max_pages, pdf.max_decoded_bytes, pdf.max_cpu_seconds) == (7, 1 << 21, 10)
    with pytest.raises(SettingsError, match="EVAULT_PDF_MAX_PAGES"):
        Settings.from_env({"EVAULT_PDF_MAX_PAGES": "0"})
    with pytest.raises(SettingsError, match="EVAULT_PDF_STAMP_PER_ORG"):
        Settings.from_env({"EVAULT_PDF_STAMP_CONCURRENCY": "1", "EVAULT_PDF_STAMP_PER_ORG": "2"})
    with pytest.raises(InvalidInput) as info:
        inspect_pdf(pdf_factory.make_pdf(pages=8), pdf)
    assert info.value.code == "Document.TooComplex" and info.value.details["setting"] == "EVAULT_PDF_MAX_PAGES"
