"""Vetting of uploaded PDFs before they enter the vault.

pyHanko's reader is used rather than pypdf because pypdf silently opens a truncated signed PDF as its
earlier revision; pyHanko insists on the final EOF marker and cross-reference data, so cut uploads fail.
Every parser failure becomes an ``InvalidInput`` with a stable code: callers never see parser exceptions.
"""

from __future__ import annotations

import contextvars
import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader

from compliance.errors import InvalidInput

# Modules whose loggers speak while a document is read; muted only inside inspect_pdf (see _Quiet).
_PYHANKO_LOGGERS = (
    "pyhanko.pdf_utils.reader",
    "pyhanko.pdf_utils.xref",
    "pyhanko.pdf_utils.generic",
    "pyhanko.pdf_utils.crypt.pubkey",
    "pyhanko.sign.fields",
    "pyhanko.sign.general",
    "pyhanko.sign.validation.pdf_embedded",
)
_quiet = contextvars.ContextVar("pdf_inspect_quiet", default=False)


class _Quiet(logging.Filter):
    """Drops pyHanko records emitted by the current thread/task while it inspects; other callers still log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _quiet.get()


_QUIET = _Quiet()
for _name in _PYHANKO_LOGGERS:
    logging.getLogger(_name).addFilter(_QUIET)


@contextmanager
def _quiet_pyhanko() -> Iterator[None]:
    token = _quiet.set(True)
    try:
        yield
    finally:
        _quiet.reset(token)


@dataclass(frozen=True)
class PdfFacts:
    """What the vault records about an accepted PDF."""

    page_count: int
    signature_count: int
    pdf_version: str


def _malformed(message: str, error: Exception | None = None) -> InvalidInput:
    details = {} if error is None else {"parser_error": f"{type(error).__name__}: {error}"}
    return InvalidInput("Document.Malformed", message, **details)


def _count_pages(pages_root: generic.PdfObject) -> int:
    """Walk the whole page tree so a dangling or cyclic node is caught now, not when the copy is rendered."""
    count = 0
    seen: set[int] = set()
    stack = [pages_root]
    while stack:
        node = stack.pop()
        if isinstance(node, generic.IndirectObject):
            if node.idnum in seen:
                raise _malformed("The PDF page tree contains a cycle.")
            seen.add(node.idnum)
            node = node.reference.get_object()
        if not isinstance(node, generic.DictionaryObject):
            raise _malformed("The PDF page tree contains a node that is not a dictionary.")
        if "/Kids" in node:
            kids = node.raw_get("/Kids")
            if isinstance(kids, generic.IndirectObject):
                kids = kids.reference.get_object()
            if not isinstance(kids, generic.ArrayObject):
                raise _malformed("The PDF page tree has a /Kids entry that is not an array.")
            stack.extend(kids.raw_get(i) for i in range(len(kids)))
        else:
            count += 1
    return count


def inspect_pdf(data: bytes) -> PdfFacts:
    """Accept a complete, unencrypted PDF with at least one page, or raise ``InvalidInput`` saying why not."""
    if not data:
        raise InvalidInput("Document.Empty", "The document is empty (zero bytes).")
    if not data.startswith(b"%PDF-"):
        raise InvalidInput("Document.NotPdf", "The document is not a PDF: it does not start with '%PDF-'.")
    with _quiet_pyhanko():
        try:
            reader = PdfFileReader(io.BytesIO(data))
            encrypted = reader.encrypted
        except Exception as exc:
            raise _malformed("The PDF is truncated or its structure cannot be read.", exc) from exc
        if encrypted:
            raise InvalidInput("Document.Encrypted", "The PDF is encrypted; upload an unencrypted document.")
        try:
            page_count = _count_pages(reader.root.raw_get("/Pages"))
            signature_count = len(reader.embedded_signatures)
            major, minor = reader.input_version
        except InvalidInput:
            raise
        except Exception as exc:
            raise _malformed("The PDF's page tree or form fields cannot be read.", exc) from exc
    if page_count == 0:
        raise _malformed("The PDF has no pages.")
    return PdfFacts(page_count=page_count, signature_count=signature_count, pdf_version=f"{major}.{minor}")
