"""Schemathesis hooks for the contract test: PDF bodies are real PDFs (valid, signed, or not a PDF at all)."""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

from tests.pdf_factory import make_pdf, make_signed_pdf

PDFS = st.sampled_from([make_pdf(pages=1), make_signed_pdf(), b"%PDF-1.4 broken", b"not a pdf"])
schemathesis.openapi.media_type("application/pdf", PDFS)
schemathesis.openapi.media_type("application/octet-stream", PDFS)


@schemathesis.serializer("application/pdf", "application/octet-stream")
def pdf_body(ctx: object, value: object) -> bytes:
    """Generated PDFs are bytes; the document's example PDF is ASCII text."""
    return value.encode("latin-1") if isinstance(value, str) else bytes(value)  # type: ignore[arg-type]
