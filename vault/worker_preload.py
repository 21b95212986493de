"""Imported by the stamper's forkserver only: one vetting and one checked stamping of a small page, done once.

pyHanko, pypdf and pdfium import much of themselves on first use (about 0.2 s of CPU here), and a worker forked
from the forkserver would otherwise pay that on its first upload or copy (and again each time a worker is
replaced). Done here, in the forkserver, before any worker is forked, every worker starts with it in place.
Nothing imports this module in the service itself.
"""

from __future__ import annotations

import hashlib
import io

from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from compliance.conditions.copy_mark import CopyMark
from compliance.conditions.mark_check import check_copy
from storage.ids import new_id, utcnow
from storage.settings import PdfSettings
from vault.copy_stamp import stamp_copy
from vault.pdf_vetting import vet_here


def _small_pdf() -> bytes:
    """One page of compressed text in a standard font: the common paths of every parser the children run."""
    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
    )
    content = DecodedStreamObject()
    content.set_data(b"BT /F1 14 Tf 72 720 Td (warm-up) Tj ET")
    page[NameObject("/Contents")] = writer._add_object(content.flate_encode())
    writer.add_metadata({"/Title": "warm-up"})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def warm_up() -> None:
    source = _small_pdf()
    digest = hashlib.sha256(source).hexdigest()
    vet_here(source, digest, PdfSettings())
    mark = CopyMark(new_id("cp"), new_id("env"), digest, utcnow())
    check_copy(source, stamp_copy(source, mark), mark.copy_id)


warm_up()
