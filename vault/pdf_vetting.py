"""Vetting of an uploaded PDF, within a budget: the work itself, run inside a limited worker process.

This module runs in the stamper's worker processes (``vault.stamp_worker.run_vetting``), under the copy path's
own memory, CPU and wall-clock limits and at a lower scheduling priority; the API process only spools and
hashes the bytes and waits (``vault.pdf_inspect``), so its event loop and GIL stay free for other tenants.

pyHanko's reader judges completeness, because pypdf silently opens a truncated signed PDF as its earlier
revision; pyHanko insists on the final EOF marker and cross-reference data, so cut uploads fail. It also finds
the signatures. Everything else is read once, by pypdf, the stamper's parser (the page tree was walked by both
until the walk on pyHanko's objects turned out to be a fifth of a 5,000-page file's vetting).

Whatever is accepted must also be stampable later, and cheaply. So the page tree is counted while it is
walked, every stream is decoded with a running total across the file (the file's /Count, /Size and /Length
are attacker-written and prove nothing), and counted again each time a page or form uses it
(``vault.pdf_uses``: the stamper joins a /Contents array element by element), CPU time is checked as the work
goes, and finally the copy stamper itself rehearses a copy, from the pypdf reader that vetted the file (its copy
is the copy path's, byte for byte); for a document beyond the small bounds below, the copy's mark is also
checked by rendering, as at issuance.
Every failure becomes an ``InvalidInput`` with a stable code (``Document.TooComplex`` names the limit):
callers never see parser exceptions. A ``MemoryError`` is let through: the worker reports it as its limit.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pypdf import PdfReader
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, StreamObject

from compliance.conditions.copy_mark import CopyMark
from compliance.conditions.mark_check import check_copy
from compliance.errors import InvalidInput
from compliance.pdf_bytes import PdfBytes
from compliance.signatures import hex_strings
from compliance.signatures.pdf_validation import DocumentSignatures, grade_signatures
from storage.ids import new_id, utcnow
from storage.settings import PdfSettings
from vault.copy_stamp import stamp_copy
from vault.pdf_uses import CyclicForm, UseCounter, decoded_chunks

hex_strings.install()  # both parsers read a signature's /Contents a byte at a time otherwise

# Modules whose loggers speak while a document is read; muted only inside vet_here (see _Quiet).
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
    """What the vault records about an accepted PDF: with its signatures graded when it has any (None if not)."""

    page_count: int
    signature_count: int
    pdf_version: str
    signatures: DocumentSignatures | None = None


def malformed(message: str, error: Exception | None = None) -> InvalidInput:
    details = {} if error is None else {"parser_error": f"{type(error).__name__}: {error}"}
    return InvalidInput("Document.Malformed", message, **details)


_SETTING = {
    "max_pages": "EVAULT_PDF_MAX_PAGES",
    "max_objects": "EVAULT_PDF_MAX_OBJECTS",
    "max_decoded_bytes": "EVAULT_PDF_MAX_DECODED_BYTES",
    "max_cpu_seconds": "EVAULT_PDF_MAX_CPU_SECONDS",
    "stamp_memory_bytes": "EVAULT_PDF_STAMP_MEMORY_BYTES",
}


def too_complex(limit: str, value: int) -> InvalidInput:
    return InvalidInput(
        "Document.TooComplex",
        f"the PDF exceeds the vault's limit {_SETTING[limit]}={value}",
        limit=limit,
        setting=_SETTING[limit],
        value=value,
    )


class _Budget:
    """Running totals of one vetting, checked as they grow: CPU time of this thread and decoded bytes."""

    def __init__(self, pdf: PdfSettings) -> None:
        self.pdf = pdf
        self.started = time.thread_time()
        self.decoded = 0  # every stream once
        self.used = 0  # every stream each time a page or form uses it, images included (vault.pdf_uses)
        self.objects = 0

    def cpu(self) -> float:
        return time.thread_time() - self.started

    def tick(self) -> None:
        if self.cpu() > self.pdf.max_cpu_seconds:
            raise too_complex("max_cpu_seconds", self.pdf.max_cpu_seconds)

    def add_decoded(self, size: int) -> None:
        self.decoded += size
        if self.decoded > self.pdf.max_decoded_bytes:
            raise too_complex("max_decoded_bytes", self.pdf.max_decoded_bytes)


def _count_pages(reader: PdfReader, budget: _Budget) -> int:
    """Walk the whole page tree so a dangling or cyclic node is caught now, not when the copy is rendered.

    Counted as it goes, so a tree of 200,000 pages stops at the limit instead of being walked to the end. On
    pypdf's reader (the stamper's parser): the use count walks the same pages next and finds them parsed.
    """
    count = 0
    seen: set[int] = set()
    stack: list[Any] = [reader.root_object.raw_get("/Pages")]
    while stack:
        if len(seen) % 256 == 0:
            budget.tick()
        node = stack.pop()
        if isinstance(node, IndirectObject):
            if node.idnum in seen:
                raise malformed("The PDF page tree contains a cycle.")
            seen.add(node.idnum)
            node = node.get_object()
        if not isinstance(node, DictionaryObject):
            raise malformed("The PDF page tree contains a node that is not a dictionary.")
        if "/Kids" in node:
            kids = node.raw_get("/Kids")
            if isinstance(kids, IndirectObject):
                kids = kids.get_object()
            if not isinstance(kids, ArrayObject):
                raise malformed("The PDF page tree has a /Kids entry that is not an array.")
            stack.extend(kids)  # pypdf's array holds the references themselves
        else:
            count += 1
            if count > budget.pdf.max_pages:
                raise too_complex("max_pages", budget.pdf.max_pages)
        if len(seen) > budget.pdf.max_objects:
            raise too_complex("max_objects", budget.pdf.max_objects)
    return count


def _count_decoded(stream: StreamObject, budget: _Budget) -> None:
    """Add what this stream decodes to, in bounded steps, so a bomb stops at the budget."""
    for chunk in decoded_chunks(stream):
        budget.add_decoded(len(chunk))
        budget.tick()


def _scan_objects(stream: BinaryIO, budget: _Budget) -> tuple[int, PdfReader]:
    """Read every object with pypdf (the stamper's parser): the page tree, counted; then the decoded bytes as
    the pages use them (a stream used N times counts N times, so a bomb of repeats stops after a sliver); then
    every stream once. The page count, and the reader for the rehearsal.

    Each stream is dropped from pypdf's cache once counted, so a spooled file is never held whole in memory."""
    reader = PdfReader(stream)
    budget.objects = sum(len(table) for table in reader.xref.values()) + len(reader.xref_objStm)
    if budget.objects > budget.pdf.max_objects:
        raise too_complex("max_objects", budget.pdf.max_objects)
    pages = _count_pages(reader, budget)
    if pages == 0:
        raise malformed("The PDF has no pages.")
    uses = UseCounter(budget.pdf.max_decoded_bytes, budget.tick)
    try:
        uses.count_pages(reader)
    except CyclicForm as exc:
        raise malformed("A form XObject of the PDF draws itself.", exc) from exc
    budget.used = uses.total + uses.drawn  # images drawn too: they decide where the rehearsal runs
    if uses.over():
        raise too_complex("max_decoded_bytes", budget.pdf.max_decoded_bytes)
    for generation, table in reader.xref.items():
        for number in table:
            budget.tick()
            if (generation, number) in uses.sizes:  # decoded by the use count already
                budget.add_decoded(uses.sizes[generation, number])
                continue
            obj = IndirectObject(number, generation, reader).get_object()
            if isinstance(obj, StreamObject):
                _count_decoded(obj, budget)
                reader.resolved_objects.pop((generation, number), None)
    return pages, reader


# A document this small cannot make the stamper's memory or time run away (the vetting has just counted every
# decoded byte as the pages use it, every page and every object), and its rehearsal only stamps; a larger one's
# copy is also checked by rendering (pdfium), as a copy is at issuance, which costs far more than stamping.
LIGHT_MAX_BYTES = 4 * 1024 * 1024
LIGHT_MAX_PAGES = 100
LIGHT_MAX_OBJECTS = 1_000


def _light(size: int, budget: _Budget, page_count: int) -> bool:
    return (
        max(size, budget.decoded, budget.used) <= LIGHT_MAX_BYTES
        and page_count <= LIGHT_MAX_PAGES
        and budget.objects <= LIGHT_MAX_OBJECTS
    )


def cannot_copy(detail: str) -> InvalidInput:
    return InvalidInput(
        "Document.Malformed",
        "The PDF cannot be copied: its structure defeats the copy stamper.",
        parser_error=detail[:500],
    )


def _rehearse(reader: PdfReader, original: bytes, mark: CopyMark, budget: _Budget, check: bool) -> None:
    """Stamp a throwaway copy with the copy path's own code (and, if ``check``, check its mark as issuance does),
    from the reader that vetted ``original``: its copy is the copy path's, byte for byte (tested), without a
    third parse."""
    try:
        copy = stamp_copy(reader, mark)
        verdict = check_copy(original, copy, mark.copy_id) if check else None
    except MemoryError:
        raise
    except Exception as exc:  # RecursionError included: the same failure the copy path would meet
        raise cannot_copy(f"{type(exc).__name__}: {exc}") from exc
    if verdict is not None and not verdict.passed:
        raise cannot_copy(f"the copy's mark fails its check: {verdict.summary()}")
    if budget.cpu() > budget.pdf.max_cpu_seconds:
        raise too_complex("max_cpu_seconds", budget.pdf.max_cpu_seconds)


def vet_here(source: bytes | Path, sha256_hex: str, pdf: PdfSettings, trust_roots: tuple[bytes, ...] = ()) -> PdfFacts:
    """Accept a complete, unencrypted, stampable PDF within the budget, or raise ``InvalidInput`` saying why not.

    Runs in this process, unlimited but for the budget: the service calls it in a worker process
    (``vault.pdf_inspect.inspect_pdf``). What cannot be stamped now is refused now: the copy stamper rehearses
    a copy with the copy path's own code. A file is read through file handles (pyHanko and pypdf seek in it)
    and whole only for the rehearsal. Its signatures are graded here, against ``trust_roots`` (DER), from the
    reader that vetted it: pyHanko's difference analysis reads what an outsider wrote, so it belongs under
    the same limits, and the API process does not parse the document a second time."""
    budget = _Budget(pdf)
    with open(source, "rb") if isinstance(source, Path) else PdfBytes(source) as stream:
        facts, embedded, reader = _vet(stream, budget)
        if embedded:
            with _quiet_pyhanko():
                graded = grade_signatures(embedded, _roots(trust_roots))
            facts = replace(facts, signatures=graded)
        stream.seek(0)
        original = stream.read()
        mark = CopyMark(new_id("cp"), new_id("env"), sha256_hex, utcnow())
        _rehearse(reader, original, mark, budget, check=not _light(len(original), budget, facts.page_count))
    return facts


def page_count(data: bytes, pdf: PdfSettings | None = None) -> int:
    """The page count vetting finds, for a PDF already vetted and vaulted (a rebuild reads it back from WORM)."""
    return _count_pages(PdfReader(PdfBytes(data)), _Budget(pdf or PdfSettings()))


@functools.lru_cache(maxsize=4)
def _roots(der: tuple[bytes, ...]) -> list[asn1_x509.Certificate]:
    """The trust roots as pyHanko takes them, parsed once per worker for each set the service sends."""
    return [asn1_x509.Certificate.load(cert) for cert in der]


def _vet(stream: BinaryIO, budget: _Budget) -> tuple[PdfFacts, list[Any], PdfReader]:
    """The facts, pyHanko's embedded signatures and pypdf's reader (both read from ``stream``, which must stay
    open to grade and to rehearse)."""
    with _quiet_pyhanko():
        try:
            reader = PdfFileReader(stream)
            encrypted = reader.encrypted
        except MemoryError:
            raise
        except Exception as exc:
            raise malformed("The PDF is truncated or its structure cannot be read.", exc) from exc
        if encrypted:
            raise InvalidInput("Document.Encrypted", "The PDF is encrypted; upload an unencrypted document.")
        try:
            embedded = list(reader.embedded_signatures)
            major, minor = reader.input_version
        except MemoryError:
            raise
        except Exception as exc:
            raise malformed("The PDF's form fields cannot be read.", exc) from exc
    try:
        stream.seek(0)
        page_count, scanned = _scan_objects(stream, budget)
    except (InvalidInput, MemoryError):
        raise
    except Exception as exc:  # RecursionError included: pypdf resolves references recursively
        raise malformed("An object of the PDF cannot be read.", exc) from exc
    facts = PdfFacts(page_count=page_count, signature_count=len(embedded), pdf_version=f"{major}.{minor}")
    return facts, embedded, scanned
