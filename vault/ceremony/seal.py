"""The sealed PDF: each adopted signature stamped into its field, a signing certificate page, one PAdES seal.

The certificate page is real text (Helvetica, extractable): per signer the order, the recipient's name, the
adopted name, when they consented and signed, and the commitment the log holds for them. The seal is a
certification signature (DocMDP "no changes") by the vault's document-signing identity, with an RFC 3161
signature timestamp when a TSA is configured; nothing is written after it, so it covers the whole file.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from datetime import datetime

from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers, timestamps
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko_certvalidator.registry import SimpleCertificateStore
from pypdf import PageObject, PdfReader, PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject, NumberObject, StreamObject

from compliance.pdf_bytes import PdfBytes
from compliance.signatures.document_identity import DocumentSigner
from vault.ceremony.drawn import Picture

_WIDTH, _HEIGHT = 612.0, 792.0
SEAL_FIELD = "EvaultSeal"


@dataclass(frozen=True)
class SignerLine:
    order: int
    name: str  # the recipient's name, as the sender gave it
    adopted: str  # the name they typed
    consented_at: datetime
    signed_at: datetime
    commitment: str  # ``sub_...:hex``, the log's commitment to the recipient
    fields: list[dict[str, float | int | str]]
    picture: Picture | None = None  # a drawn signature, drawn into the signature fields instead of the name


def _text(value: str, limit: int = 110) -> str:
    text = value.encode("latin-1", "replace").decode("latin-1")
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def _fonts(writer: PdfWriter) -> DictionaryObject:
    def font(base: str) -> object:
        return writer._add_object(
            DictionaryObject(
                {
                    NameObject("/Type"): NameObject("/Font"),
                    NameObject("/Subtype"): NameObject("/Type1"),
                    NameObject("/BaseFont"): NameObject(base),
                    NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
                }
            )
        )

    return DictionaryObject(
        {
            NameObject("/Font"): DictionaryObject(
                {NameObject("/EvF1"): font("/Helvetica"), NameObject("/EvF2"): font("/Helvetica-Oblique")}
            )
        }
    )


def _stream(writer: PdfWriter, ops: list[str]) -> object:
    stream = DecodedStreamObject()
    stream.set_data("\n".join(ops).encode("latin-1"))
    return writer._add_object(stream)


def _image(writer: PdfWriter, picture: Picture) -> object:
    """The picture as an image XObject, its alpha (if any) as the soft mask."""

    def stream(data: bytes, grey: bool) -> StreamObject:
        image = StreamObject()
        image._data = zlib.compress(data)
        image.update(
            {
                NameObject("/Type"): NameObject("/XObject"),
                NameObject("/Subtype"): NameObject("/Image"),
                NameObject("/Width"): NumberObject(picture.width),
                NameObject("/Height"): NumberObject(picture.height),
                NameObject("/ColorSpace"): NameObject("/DeviceGray" if grey else "/DeviceRGB"),
                NameObject("/BitsPerComponent"): NumberObject(8),
                NameObject("/Filter"): NameObject("/FlateDecode"),
            }
        )
        return image

    colour = stream(picture.colour, picture.grey)
    if picture.alpha is not None:
        colour[NameObject("/SMask")] = writer._add_object(stream(picture.alpha, True))
    return writer._add_object(colour)


def _draw_picture(name: str, picture: Picture, x: float, y: float, width: float, height: float) -> str:
    """The picture fitted into the field, its aspect ratio kept, centred."""
    scale = min(width / picture.width, height / picture.height)
    w, h = picture.width * scale, picture.height * scale
    return f"q {w:.2f} 0 0 {h:.2f} {x + (width - w) / 2:.2f} {y + (height - h) / 2:.2f} cm {name} Do Q"


def _field_text(field: dict[str, float | int | str], signer: SignerLine) -> str:
    kind = field["type"]
    if kind == "signature":
        return signer.adopted
    if kind == "initials":
        return "".join(part[0] for part in signer.adopted.split() if part).upper()
    if kind == "date":
        return signer.signed_at.strftime("%Y-%m-%d")
    return ""


def _stamp_ops(signers_: list[SignerLine], page_number: int, origin: tuple[float, float]) -> tuple[list[str], set[int]]:
    """The page's drawing operators, and which signers' pictures (by index) they use."""
    ops, pictures = [], set()
    for index, signer in enumerate(signers_):
        for field in signer.fields:
            text = _field_text(field, signer)
            if field["page"] != page_number or not text:
                continue
            x, y = float(field["x"]) + origin[0], float(field["y"]) + origin[1]
            width, height = float(field["width"]), float(field["height"])
            if field["type"] == "signature" and signer.picture is not None:
                ops.append(_draw_picture(f"/EvIm{index}", signer.picture, x, y, width, height))
                pictures.add(index)
                continue
            size = max(4.0, min(height * 0.7, width / max(1, len(text)) * 1.8, 24.0))
            font = "/EvF2" if field["type"] in ("signature", "initials") else "/EvF1"
            baseline = y + (height - size) / 2 + 1
            ops.append(f"BT {font} {size:.1f} Tf 1 0 0 1 {x + 2:.2f} {baseline:.2f} Tm {_text(text)} Tj ET")
    return ops, pictures


def certificate_lines(
    envelope_id: str, title: str, document_sha256: str, signers_: list[SignerLine]
) -> list[tuple[int, str]]:
    lines = [
        (16, "Signing certificate"),
        (10, f"Envelope {envelope_id}: {title}"),
        (8, f"Document signed (SHA-256 before stamping): {document_sha256}"),
        (10, ""),
    ]
    for s in signers_:
        lines += [
            (10, f"Signer {s.order}: {s.name}"),
            (9, f"    Adopted signature ({'drawn, with the name' if s.picture else 'typed'}): {s.adopted}"),
            (9, f"    Consented to electronic records and signatures: {s.consented_at.isoformat()}"),
            (9, f"    Signed: {s.signed_at.isoformat()}   (signing order {s.order})"),
            (8, f"    Commitment in the log: {s.commitment}"),
            (10, ""),
        ]
    lines += [
        (8, "This page and the signatures above are sealed by the vault's document-signing certificate"),
        (8, "(certification signature, no changes permitted). The ceremony's events are in the envelope's log."),
    ]
    return lines


def stamped(original: bytes, envelope_id: str, title: str, document_sha256: str, signers_: list[SignerLine]) -> bytes:
    """The document with each signature in its fields, plus the certificate page (not yet sealed)."""
    writer = PdfWriter(clone_from=PdfReader(PdfBytes(original)))
    resources = _fonts(writer)
    images = {i: _image(writer, s.picture) for i, s in enumerate(signers_) if s.picture is not None}
    for number, page in enumerate(list(writer.pages), start=1):
        box = page.cropbox
        ops, pictures = _stamp_ops(signers_, number, (float(box.left), float(box.bottom)))
        if not ops:
            continue
        overlay = PageObject.create_blank_page(width=float(page.mediabox.width), height=float(page.mediabox.height))
        overlay[NameObject("/Resources")] = DictionaryObject(
            {
                **resources,
                NameObject("/XObject"): DictionaryObject({NameObject(f"/EvIm{i}"): images[i] for i in pictures}),
            }
        )
        overlay[NameObject("/Contents")] = _stream(writer, ops)
        page.merge_page(overlay, over=True)
    cert = writer.add_blank_page(_WIDTH, _HEIGHT)
    cert[NameObject("/Resources")] = resources
    ops, y = ["BT"], _HEIGHT - 60
    for size, text in certificate_lines(envelope_id, title, document_sha256, signers_):
        ops.append(f"/EvF1 {size} Tf 1 0 0 1 50 {y:.1f} Tm {_text(text)} Tj")
        y -= size + 6
    ops.append("ET")
    cert[NameObject("/Contents")] = _stream(writer, ops)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def seal(document: bytes, signer: DocumentSigner, tsa_url: str | None = None) -> bytes:
    """Certify ``document`` (DocMDP no changes), PAdES, with a signature timestamp when a TSA is configured."""
    cert, key = signer.asn1()
    registry: SimpleCertificateStore = SimpleCertificateStore.from_certs([cert])  # type: ignore[no-untyped-call]
    pdf_signer = signers.SimpleSigner(signing_cert=cert, signing_key=key, cert_registry=registry)
    meta = signers.PdfSignatureMetadata(
        field_name=SEAL_FIELD,
        subfilter=SigSeedSubFilter.PADES,
        certify=True,
        docmdp_permissions=fields.MDPPerm.NO_CHANGES,
        reason="Signed by every signer of the envelope; sealed by the vault",
    )
    timestamper = timestamps.HTTPTimeStamper(tsa_url, timeout=10) if tsa_url else None
    out = signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(document)), meta, pdf_signer, timestamper=timestamper)
    sealed: bytes = out.getvalue()
    return sealed
