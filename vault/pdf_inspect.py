"""Vetting of uploaded PDFs before they enter the vault, within a budget.

pyHanko's reader judges completeness, because pypdf silently opens a truncated signed PDF as its earlier
revision; pyHanko insists on the final EOF marker and cross-reference data, so cut uploads fail.

Whatever is accepted must also be stampable later, and cheaply. So the page tree is counted while it is
walked, every stream is decoded with a running total across the file (the file's /Count, /Size and /Length
are attacker-written and prove nothing), and counted again each time a page or form uses it
(``vault.pdf_uses``: the stamper joins a /Contents array element by element), CPU time is checked as the work
goes, and finally the copy stamper itself (pypdf, the other parser) rehearses a copy: in this process only for
a document whose bytes as stored, decoded and used, pages and objects are all small (checked before stamping),
otherwise in a child process under the copy path's own memory, CPU and wall-clock limits.
Every failure becomes an ``InvalidInput`` with a stable code (``Document.TooComplex`` names the limit):
callers never see parser exceptions.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import BinaryIO

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader
from pypdf import PdfReader
from pypdf.generic import IndirectObject, StreamObject

from compliance.conditions.copy_mark import CopyMark
from compliance.errors import InvalidInput
from storage.ids import new_id, utcnow
from storage.settings import PdfSettings
from vault.copy_stamp import stamp_copy
from vault.pdf_uses import CyclicForm, UseCounter, decoded_chunks
from vault.stamp_worker import StampFailure, StampLimits, busy, run_stamp, slots_for
from vault.upload_spool import SpooledDocument

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


_SETTING = {
    "max_pages": "EVAULT_PDF_MAX_PAGES",
    "max_objects": "EVAULT_PDF_MAX_OBJECTS",
    "max_decoded_bytes": "EVAULT_PDF_MAX_DECODED_BYTES",
    "max_cpu_seconds": "EVAULT_PDF_MAX_CPU_SECONDS",
    "stamp_memory_bytes": "EVAULT_PDF_STAMP_MEMORY_BYTES",
}
# pypdf reads each stream's raw bytes whole while it parses the object, so vetting holds the largest stream of the
# file in memory for a moment. Vetting is CPU-bound: more at once than cores gains nothing, and this bounds
# that memory to a few streams whatever the number of uploads in flight (those wait here, spooled).
_VETTING = threading.BoundedSemaphore(max(2, os.cpu_count() or 2))
# And a large file (whose streams can be large) is vetted one at a time: the memory vetting holds is then at most
# one large file's largest stream plus a few small files', whatever the number and size of uploads in flight.
_LARGE = 8 * 1024 * 1024
_VETTING_LARGE = threading.Lock()


def _too_complex(limit: str, value: int) -> InvalidInput:
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
            raise _too_complex("max_cpu_seconds", self.pdf.max_cpu_seconds)

    def add_decoded(self, size: int) -> None:
        self.decoded += size
        if self.decoded > self.pdf.max_decoded_bytes:
            raise _too_complex("max_decoded_bytes", self.pdf.max_decoded_bytes)


def _count_pages(pages_root: generic.PdfObject, budget: _Budget) -> int:
    """Walk the whole page tree so a dangling or cyclic node is caught now, not when the copy is rendered.

    Counted as it goes, so a tree of 200,000 pages stops at the limit instead of being walked to the end.
    """
    count = 0
    seen: set[int] = set()
    stack = [pages_root]
    while stack:
        if len(seen) % 256 == 0:
            budget.tick()
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
            if count > budget.pdf.max_pages:
                raise _too_complex("max_pages", budget.pdf.max_pages)
        if len(seen) > budget.pdf.max_objects:
            raise _too_complex("max_objects", budget.pdf.max_objects)
    return count


def _count_decoded(stream: StreamObject, budget: _Budget) -> None:
    """Add what this stream decodes to, in bounded steps, so a bomb stops at the budget."""
    for chunk in decoded_chunks(stream):
        budget.add_decoded(len(chunk))
        budget.tick()


def _scan_objects(stream: BinaryIO, budget: _Budget) -> None:
    """Read every object with pypdf (the stamper's parser): first the decoded bytes as the pages use them (a
    stream used N times counts N times, so a bomb of repeats stops after a sliver), then every stream once.

    Each stream is dropped from pypdf's cache once counted, so a spooled file is never held whole in memory."""
    reader = PdfReader(stream)
    budget.objects = sum(len(table) for table in reader.xref.values()) + len(reader.xref_objStm)
    if budget.objects > budget.pdf.max_objects:
        raise _too_complex("max_objects", budget.pdf.max_objects)
    uses = UseCounter(budget.pdf.max_decoded_bytes, budget.tick)
    try:
        uses.count_pages(reader)
    except CyclicForm as exc:
        raise _malformed("A form XObject of the PDF draws itself.", exc) from exc
    budget.used = uses.total + uses.drawn  # images drawn too: they decide where the rehearsal runs
    if uses.over():
        raise _too_complex("max_decoded_bytes", budget.pdf.max_decoded_bytes)
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


# A document this small cannot make the stamper's memory or time run away (the vetting has just counted every
# decoded byte as the pages use it, every page and every object), so its rehearsal runs in this process, one per
# vetting slot; only a larger one pays for a child process (~0.4-1.5 s here to start), which would otherwise cap
# vault-in at a few documents a second. The bound is checked before the stamper joins anything.
IN_PROCESS_MAX_BYTES = 4 * 1024 * 1024
IN_PROCESS_MAX_PAGES = 100
IN_PROCESS_MAX_OBJECTS = 1_000


def _rehearsable_here(size: int, budget: _Budget, page_count: int) -> bool:
    return (
        max(size, budget.decoded, budget.used) <= IN_PROCESS_MAX_BYTES
        and page_count <= IN_PROCESS_MAX_PAGES
        and budget.objects <= IN_PROCESS_MAX_OBJECTS
    )


def _cannot_copy(exc: Exception) -> InvalidInput:
    return _malformed("The PDF cannot be copied: its structure defeats the copy stamper.", exc)


def _rehearse_here(data: bytes | SpooledDocument, mark: CopyMark, budget: _Budget) -> None:
    """Stamp a throwaway copy in this process: only for a document within the in-process bounds."""
    size = data.size if isinstance(data, SpooledDocument) else len(data)
    try:
        stamp_copy(data.head(size) if isinstance(data, SpooledDocument) else data, mark)
    except Exception as exc:  # RecursionError included: the same failure the copy path would meet
        raise _cannot_copy(exc) from exc
    if budget.cpu() > budget.pdf.max_cpu_seconds:
        raise _too_complex("max_cpu_seconds", budget.pdf.max_cpu_seconds)


def _rehearse_in_child(data: bytes | SpooledDocument, mark: CopyMark, budget: _Budget, org_id: str | None) -> None:
    """Stamp a throwaway copy in a stamper process under the copy path's own memory, CPU and wall-clock limits
    (the CPU what the vetting left of its budget). A spooled document goes by path, never through the pipe.
    The stamping slot is counted for the uploading organisation, so its share is that of its copies too."""
    pdf = budget.pdf
    cpu_left = max(1, math.ceil(pdf.max_cpu_seconds - budget.cpu()))
    limits = replace(StampLimits.from_settings(pdf), cpu_seconds=min(cpu_left, pdf.max_cpu_seconds))
    wait = float(pdf.stamp_timeout_seconds)
    with slots_for(pdf).slot(None, busy("Vault.Busy"), wait_seconds=wait, org=org_id):
        try:
            source = (data.path or data.head(data.size)) if isinstance(data, SpooledDocument) else data
            run_stamp(source, mark, limits, keep=False)
        except StampFailure as exc:
            if exc.kind in ("failed", "unmarked"):
                raise _cannot_copy(exc) from exc
            raise _too_complex(
                "max_cpu_seconds" if exc.kind == "timeout" else "stamp_memory_bytes",
                (limits.cpu_seconds if exc.kind == "timeout" else limits.memory_bytes),
            ) from exc


def _open(data: bytes | SpooledDocument) -> BinaryIO:
    return data.open() if isinstance(data, SpooledDocument) else io.BytesIO(data)


def inspect_pdf(data: bytes | SpooledDocument, pdf: PdfSettings | None = None, org_id: str | None = None) -> PdfFacts:
    """Accept a complete, unencrypted, stampable PDF within the budget, or raise ``InvalidInput`` saying why not.

    What cannot be stamped now is refused now: the copy stamper rehearses a copy with the copy path's own code.
    A spooled document is read through file handles (pyHanko and pypdf seek in it), never loaded whole."""
    budget = _Budget(pdf or PdfSettings())
    size = data.size if isinstance(data, SpooledDocument) else len(data)
    if not size:
        raise InvalidInput("Document.Empty", "The document is empty (zero bytes).")
    head = data.head(5) if isinstance(data, SpooledDocument) else data[:5]
    if head != b"%PDF-":
        raise InvalidInput("Document.NotPdf", "The document is not a PDF: it does not start with '%PDF-'.")
    sha256_hex = data.sha256_hex if isinstance(data, SpooledDocument) else hashlib.sha256(data).hexdigest()
    mark = CopyMark(new_id("cp"), new_id("env"), sha256_hex, utcnow())
    with _VETTING_LARGE if size > _LARGE else contextlib.nullcontext(), _VETTING, _open(data) as stream:
        facts = _vet(stream, budget)
        if _rehearsable_here(size, budget, facts.page_count):
            _rehearse_here(data, mark, budget)  # within the vetting slot, so few run at once
            return facts
    _rehearse_in_child(data, mark, budget, org_id)
    return facts


def page_count(data: bytes, pdf: PdfSettings | None = None) -> int:
    """The page count vetting finds, for a PDF already vetted and vaulted (a rebuild reads it back from WORM)."""
    with _quiet_pyhanko():
        reader = PdfFileReader(io.BytesIO(data))
        return _count_pages(reader.root.raw_get("/Pages"), _Budget(pdf or PdfSettings()))


def _vet(stream: BinaryIO, budget: _Budget) -> PdfFacts:
    with _quiet_pyhanko():
        try:
            reader = PdfFileReader(stream)
            encrypted = reader.encrypted
        except Exception as exc:
            raise _malformed("The PDF is truncated or its structure cannot be read.", exc) from exc
        if encrypted:
            raise InvalidInput("Document.Encrypted", "The PDF is encrypted; upload an unencrypted document.")
        try:
            page_count = _count_pages(reader.root.raw_get("/Pages"), budget)
            signature_count = len(reader.embedded_signatures)
            major, minor = reader.input_version
        except InvalidInput:
            raise
        except Exception as exc:
            raise _malformed("The PDF's page tree or form fields cannot be read.", exc) from exc
    if page_count == 0:
        raise _malformed("The PDF has no pages.")
    try:
        stream.seek(0)
        _scan_objects(stream, budget)
    except InvalidInput:
        raise
    except Exception as exc:  # RecursionError included: pypdf resolves references recursively
        raise _malformed("An object of the PDF cannot be read.", exc) from exc
    return PdfFacts(page_count=page_count, signature_count=signature_count, pdf_version=f"{major}.{minor}")
