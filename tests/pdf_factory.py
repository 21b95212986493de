"""PDF builders shared by tests and benchmarks.

Everything is generated in-process and offline so tests never depend on fixture files, and each helper yields
exactly the kind of document (good, encrypted, truncated, signed, signed-then-altered) a test needs.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import os

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils import generic as ph_generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko_certvalidator.registry import SimpleCertificateStore
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject, RectangleObject, StreamObject

_LETTER = (612.0, 792.0)


def _pdf_str(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def _page_content(text: str) -> bytes:
    return f"BT /F1 14 Tf 72 720 Td {_pdf_str(text)} Tj ET".encode("latin-1")


def _add_text_page(writer: PdfWriter, text: str, size: tuple[float, float] = _LETTER) -> None:
    page = writer.add_blank_page(*size)
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
    stream = DecodedStreamObject()
    stream.set_data(_page_content(text))
    page[NameObject("/Contents")] = writer._add_object(stream)


def _write(writer: PdfWriter) -> bytes:
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _writer(pages: int, text: str, size: tuple[float, float] = _LETTER) -> PdfWriter:
    writer = PdfWriter()
    for number in range(1, pages + 1):
        _add_text_page(writer, f"{text} - page {number}", size)
    return writer


def make_pdf(
    pages: int = 2,
    text: str = "Loan agreement",
    size_bytes: int | None = None,
    page_size: tuple[float, float] = _LETTER,
) -> bytes:
    """A valid PDF whose page ``n`` shows ``"{text} - page {n}"``; ``size_bytes`` pads it to that exact size.

    Padding is a random (incompressible) stream hung off the catalog, so size-sensitive code sees real bytes.
    """
    writer = _writer(pages, text, page_size)
    if size_bytes is None:
        return _write(writer)
    pad = StreamObject()
    writer._root_object[NameObject("/EvaultPadding")] = writer._add_object(pad)
    pad.set_data(b"")
    overhead = len(_write(writer))
    if size_bytes < overhead:
        raise ValueError(f"size_bytes must be at least {overhead}")
    pad.set_data(os.urandom(size_bytes - overhead))
    data = _write(writer)
    # The /Length digits and xref offsets grow with the payload; trim the difference and write again.
    pad.set_data(pad.get_data()[: len(pad.get_data()) - (len(data) - size_bytes)])
    data = _write(writer)
    assert len(data) == size_bytes, (len(data), size_bytes)
    return data


def make_landscape_and_rotated_pdf() -> bytes:
    """Page 1 landscape, page 2 portrait with /Rotate 90, page 3 with a CropBox inside its MediaBox."""
    writer = PdfWriter()
    _add_text_page(writer, "Landscape page", (792.0, 612.0))
    _add_text_page(writer, "Rotated page")
    writer.pages[1].rotate(90)
    _add_text_page(writer, "Cropped page")
    writer.pages[2].cropbox = RectangleObject([50, 50, 400, 600])
    return _write(writer)


def make_encrypted_pdf() -> bytes:
    """Encrypted with a real user password: unreadable without it."""
    writer = _writer(1, "Secret")
    writer.encrypt(user_password="user-secret", owner_password="owner-secret", algorithm="AES-256")
    return _write(writer)


def make_encrypted_pdf_empty_password() -> bytes:
    """Encrypted with an empty user password: opens in any viewer, but is still encrypted."""
    writer = _writer(1, "Open but encrypted")
    writer.encrypt(user_password="", owner_password="owner-secret", algorithm="AES-256")
    return _write(writer)


def truncate(data: bytes) -> bytes:
    """Cut the file so its last xref and %%EOF are lost, as an interrupted upload would."""
    return data[: len(data) - max(len(data) // 3, 64)]


_Pki = tuple[asn1_x509.Certificate, asn1_keys.PrivateKeyInfo, asn1_x509.Certificate]


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    ca_key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is None:
        usage = {
            "key_cert_sign": True,
            "crl_sign": True,
            "digital_signature": False,
            "content_commitment": False,
        }
    else:
        usage = {
            "key_cert_sign": False,
            "crl_sign": False,
            "digital_signature": True,
            "content_commitment": True,
        }
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    builder = builder.add_extension(
        x509.KeyUsage(
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            encipher_only=False,
            decipher_only=False,
            **usage,
        ),
        critical=True,
    )
    return builder.sign(ca_key, hashes.SHA256())


def make_signing_pki(label: str = "Evault Test") -> _Pki:
    """(signer certificate, signer key, root certificate) of a fresh PKI named ``label``."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert(f"{label} Root CA", root_key, None, root_key)
    signer_key = ec.generate_private_key(ec.SECP256R1())
    signer = _cert(f"{label} Signer", signer_key, root, root_key)
    key_der = signer_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return (
        asn1_x509.Certificate.load(signer.public_bytes(serialization.Encoding.DER)),
        asn1_keys.PrivateKeyInfo.load(key_der),
        asn1_x509.Certificate.load(root.public_bytes(serialization.Encoding.DER)),
    )


@functools.cache
def signing_pki() -> _Pki:
    """The test PKI every signed test PDF uses, built once per process."""
    return make_signing_pki()


def make_signed_pdf(pages: int = 1, pki: _Pki | None = None) -> bytes:
    """A PAdES baseline-B signed PDF, signed by the test PKI's signer (trust root: ``signing_pki()[2]``)."""
    cert, key, root = pki or signing_pki()
    signer = signers.SimpleSigner(
        signing_cert=cert, signing_key=key, cert_registry=SimpleCertificateStore.from_certs([root])
    )
    meta = signers.PdfSignatureMetadata(field_name="Signature1", subfilter=SigSeedSubFilter.PADES)
    out = signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(make_pdf(pages, "Signed agreement"))), meta, signer)
    signed: bytes = out.getvalue()
    return signed


def make_signed_then_modified_pdf() -> bytes:
    """A signed PDF followed by an incremental update that replaces page 1's content (an illegal change)."""
    writer = IncrementalPdfFileWriter(io.BytesIO(make_signed_pdf()))
    page_ref = writer.root["/Pages"]["/Kids"][0]
    page = page_ref.get_object()
    stream = ph_generic.StreamObject(stream_data=_page_content("Altered after signing"))
    page["/Contents"] = writer.add_object(stream)
    writer.update_container(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
