"""pypdf reads a PDF held in memory where it lies (compliance/pdf_bytes.py)."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable
from typing import BinaryIO

import pytest
from pypdf import PdfReader

from compliance.pdf_bytes import PdfBytes
from tests import pdf_factory

pytestmark = pytest.mark.once  # no database or store: the SQLite pass only

SIZE = 2 * 1024 * 1024


def _peak_while_reading(make: Callable[[bytes], BinaryIO], data: bytes) -> tuple[int, str]:
    tracemalloc.start()
    try:
        reader = PdfReader(make(data))
        text = reader.pages[0].extract_text()
        return tracemalloc.get_traced_memory()[1], text
    finally:
        tracemalloc.stop()


def test_a_reader_over_pdf_bytes_does_not_copy_the_file() -> None:
    data = pdf_factory.make_pdf(size_bytes=SIZE, text="held where it lies")
    peak, text = _peak_while_reading(PdfBytes, data)
    assert "held where it lies" in text
    assert peak < SIZE // 4
    # The control: over a plain BytesIO, pypdf's size check through getbuffer() copies the whole file.
    # Should pypdf stop asking for it, this fails, and PdfBytes can go.
    assert _peak_while_reading(io.BytesIO, data)[0] >= SIZE


def test_pdf_bytes_reads_as_bytes_io_does() -> None:
    data = pdf_factory.make_pdf(pages=3)
    stream = PdfBytes(data)
    assert not hasattr(stream, "getbuffer")
    assert stream.read(8) == data[:8] and stream.seek(0, io.SEEK_END) == len(data)
    stream.seek(0)
    assert stream.read() == data
    assert len(PdfReader(PdfBytes(data)).pages) == 3
