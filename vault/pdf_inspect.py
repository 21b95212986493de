"""The vetting of an uploaded PDF, as the service calls it: in a limited worker process, within a fair share.

The API process only receives, spools and hashes an upload's bytes (``vault.upload_spool``); parsing the
document, rehearsing its copy and grading its signatures (``vault.pdf_vetting``) run in one of the stamper's
pooled worker processes (``vault.worker_pool``) under the copy path's own memory, CPU and wall-clock limits and
at a lower priority (``vault.stamp_worker.run_vetting``). So a hostile file costs the API neither memory nor
CPU, and other tenants' requests never wait for its GIL.

How many vet at once is capped per service process (``EVAULT_PDF_STAMP_CONCURRENCY`` jobs, slots of their own
beside the copies', all served by the ``EVAULT_PDF_WORKERS`` workers), and shared fairly (``vault.slots``): an
organisation alone may use every slot, beside others it gets at most its share, so one tenant's flood of
uploads leaves the others theirs. An upload that finds no slot within ``EVAULT_PDF_STAMP_TIMEOUT_SECONDS`` is
refused with 503 ``Vault.Busy`` and a retry hint.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path

from asn1crypto import x509 as asn1_x509

from compliance.errors import InvalidInput
from storage.settings import PdfSettings
from vault.pdf_vetting import PdfFacts, cannot_copy, page_count, too_complex
from vault.slots import Slots
from vault.stamp_worker import busy, run_vetting
from vault.upload_spool import SpooledDocument
from vault.worker_pool import StampFailure

__all__ = ["PdfFacts", "inspect_pdf", "page_count", "vetting_slots"]

_SLOTS: dict[int, Slots] = {}
_SLOTS_LOCK = threading.Lock()


def vetting_slots(pdf: PdfSettings) -> Slots:
    """This process's vetting slots: ``stamp_concurrency`` at once, all of them for an organisation alone."""
    total = pdf.stamp_concurrency
    with _SLOTS_LOCK:
        return _SLOTS.setdefault(total, Slots(total, total, total))


def inspect_pdf(
    data: bytes | SpooledDocument,
    pdf: PdfSettings | None = None,
    org_id: str | None = None,
    trust_roots: Sequence[asn1_x509.Certificate] = (),
) -> PdfFacts:
    """Accept a complete, unencrypted, stampable PDF within the budget, or raise ``InvalidInput`` saying why not;
    a signed one comes back with its signatures graded against ``trust_roots``.

    Only the first bytes are looked at here; a spooled file goes to the worker by its path, a small one (at
    most the spool's memory part) through the pipe."""
    pdf = pdf or PdfSettings()
    size = data.size if isinstance(data, SpooledDocument) else len(data)
    if not size:
        raise InvalidInput("Document.Empty", "The document is empty (zero bytes).")
    head = data.head(5) if isinstance(data, SpooledDocument) else data[:5]
    if head != b"%PDF-":
        raise InvalidInput("Document.NotPdf", "The document is not a PDF: it does not start with '%PDF-'.")
    source: bytes | Path
    if isinstance(data, SpooledDocument):
        source, digest = data.path or data.head(size), data.sha256_hex
    else:
        source, digest = data, hashlib.sha256(data).hexdigest()
    wait = float(pdf.stamp_timeout_seconds)
    with vetting_slots(pdf).slot(None, busy("Vault.Busy"), wait_seconds=wait, org=org_id):
        try:
            return run_vetting(source, digest, pdf, org_id, tuple(root.dump() for root in trust_roots))
        except StampFailure as exc:
            if exc.kind == "timeout":
                raise too_complex("max_cpu_seconds", pdf.max_cpu_seconds) from exc
            if exc.kind == "memory":
                raise too_complex("stamp_memory_bytes", pdf.stamp_memory_bytes) from exc
            raise cannot_copy(f"{exc.kind}: {exc.detail}") from exc
