"""The signing page's access check: a code the signer reads from an image made the way the document's pages are.

E-SIGN §101(c)(1)(C)(ii) wants consent given "in a manner that reasonably demonstrates" the consumer can access
the records in the electronic form used. The page shows the document as PNG pages rendered by pdfium; the check
is a one-page PDF holding a six-digit code, rendered by the same code path, which the signer types back before
the page records their consent. The code is a function of the link's token (not a secret: the token already is
one), so the same link shows the same code and nothing is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import io

from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from compliance.errors import InvalidInput
from vault.page_images import render_page

_WIDTH, _HEIGHT = 360.0, 72.0


def access_code(token: str) -> str:
    """Six digits derived from the token."""
    digest = hashlib.sha256(b"evault signing access check\x00" + token.encode()).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 1_000_000:06d}"


def _pdf(code: str) -> bytes:
    writer = PdfWriter()
    page = writer.add_blank_page(_WIDTH, _HEIGHT)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica-Bold"),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
    )
    stream = DecodedStreamObject()
    stream.set_data(f"BT /F1 14 Tf 16 44 Td (Access code:) Tj /F1 30 Tf 0 -32 Td ({code}) Tj ET".encode())
    page[NameObject("/Contents")] = writer._add_object(stream)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def access_image(token: str) -> bytes:
    """The check's PNG for this link."""
    return render_page(_pdf(access_code(token)), 1)


def check_access_code(token: str, code: str) -> None:
    """``Signing.AccessCodeMismatch`` unless ``code`` is the one the link's image shows."""
    if not hmac.compare_digest(code.strip().encode(), access_code(token).encode()):
        raise InvalidInput("Signing.AccessCodeMismatch", "the code is not the one shown in the access-check image")
