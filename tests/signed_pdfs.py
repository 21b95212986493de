"""The signed PDFs the signature-validation tests need, made in-process with pyHanko and a test PKI.

Each builder yields one shape a vault will meet: valid, certified, signed twice, with a document timestamp,
tampered inside the signed range, with an uncovered tail, with the appearance overridden by a later
incremental update, and with the trailer changed afterwards.
"""

from __future__ import annotations

import functools
import io

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko.sign.timestamps import DummyTimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

from tests.pdf_factory import make_pdf, make_signed_pdf, signing_pki
from tests.test_timestamping import Pki, _make_pki


@functools.cache
def tsa_pki() -> Pki:
    return _make_pki("evault signature tests")


def _signer() -> signers.SimpleSigner:
    cert, key, root = signing_pki()
    return signers.SimpleSigner(
        signing_cert=cert, signing_key=key, cert_registry=SimpleCertificateStore.from_certs([root])
    )


def _sign(data: bytes, field: str, *, certify: bool = False, stamper: DummyTimeStamper | None = None) -> bytes:
    meta = signers.PdfSignatureMetadata(
        field_name=field,
        subfilter=SigSeedSubFilter.PADES,
        certify=certify,
        docmdp_permissions=fields.MDPPerm.FILL_FORMS,
    )
    out = signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(data)), meta, _signer(), timestamper=stamper)
    return out.getvalue()


def valid() -> bytes:
    return make_signed_pdf()


def padded(size_bytes: int) -> bytes:
    """A valid signature over a PDF padded to about ``size_bytes`` (a vault-in's usual upload is 1 MiB)."""
    return _sign(make_pdf(size_bytes=size_bytes), "Signature1")


def certified() -> bytes:
    return _sign(make_pdf(1, "Certified agreement"), "Certification", certify=True)


def signed_twice() -> bytes:
    return _sign(make_signed_pdf(), "Signature2")


def with_signature_timestamp() -> bytes:
    return _sign(make_pdf(1, "Timestamped agreement"), "Signature1", stamper=tsa_pki().stamper)


def with_document_timestamp() -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(make_signed_pdf()))
    out = signers.PdfTimeStamper(tsa_pki().stamper).timestamp_pdf(writer, "sha256")
    return out.getvalue()


def tampered_in_signed_range() -> bytes:
    data = make_signed_pdf()
    at = data.index(b"Signed agreement")
    return data[:at] + b"Signed agreemenT" + data[at + 16 :]


def uncovered_tail() -> bytes:
    return make_signed_pdf() + b"\n% bytes appended after the signed revision\n"


def appearance_overridden() -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(make_signed_pdf()))
    widget = writer.root["/AcroForm"]["/Fields"][0].get_object()
    appearance = generic.StreamObject(
        {generic.NameObject("/BBox"): generic.ArrayObject([generic.NumberObject(0)] * 4)},
        stream_data=b"0 0 1 rg 0 0 500 500 re f",
    )
    widget["/AP"] = generic.DictionaryObject({generic.NameObject("/N"): writer.add_object(appearance)})
    writer.update_container(widget)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def trailer_changed() -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(make_signed_pdf()))
    info = generic.DictionaryObject({generic.NameObject("/Title"): generic.TextStringObject("Changed later")})
    writer.trailer["/Info"] = writer.add_object(info)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
