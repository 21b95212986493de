"""The certificate as one page for people, PAdES-signed with the vault's document-signing identity.

The page states the verdict, each condition, the documents' hashes, the assignee, the custodian and the
checkpoint, and the SHA-256 of the signed JSON certificate it renders (the JSON stays the evidence an auditor
checks with ``evault cert verify``). The signature is PAdES baseline B (``ETSI.CAdES.detached``) with an
ECDSA P-256 key, which common PDF readers validate; Ed25519 they do not.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import rfc8785
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko_certvalidator.registry import SimpleCertificateStore
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from compliance.signatures.document_identity import DocumentSigner

_WIDTH, _HEIGHT, _MAX_CHARS = 612.0, 792.0, 120


def _text(value: Any) -> str:
    text = str(value).encode("latin-1", "replace").decode("latin-1")
    text = text if len(text) <= _MAX_CHARS else text[: _MAX_CHARS - 3] + "..."
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def page_lines(document: dict[str, Any]) -> list[tuple[int, str]]:
    """(font size, text) of each line on the page."""
    cert = document["certificate"]
    envelope, conditions = cert["envelope"], cert["conditions"]
    digest = hashlib.sha256(rfc8785.dumps(document)).hexdigest()
    lines = [
        (16, "UCC 9-105 certificate of control"),
        (10, f"Envelope {envelope['id']}: {envelope['title']}"),
        (10, f"Verdict: {conditions['verdict'].upper()}   issued {cert['issued_at']}"),
        (10, ""),
    ]
    lines += [(9, f"({r['condition']}) {r['status'].upper()}: {r['title']}") for r in conditions["conditions"]]
    lines += [(10, ""), (10, "Authoritative copy")]
    copy = cert.get("authoritative_copy") or {"documents": []}
    for doc in copy["documents"]:
        lines.append((8, f"{doc['filename']}  version {doc['version_id']}  lock {doc['lock_mode']}"))
        lines.append((8, f"    SHA-256 {doc['sha256']}"))
    assignee = cert.get("assignee_of_record") or {}
    custodian = cert["custodian"]
    checkpoint = cert["ledger"]["checkpoint"]
    released = cert.get("vault_out") or {}
    lines += [
        (10, ""),
        (10, f"Assignee of record: {assignee.get('name', '(none)')}"),
        (10, f"Custodian: {custodian['name']} ({custodian['id']})"),
        (
            10,
            f"Copies issued: {len(cert['copies'])}   vault-out: {released.get('reason', 'none')}",
        ),
        (10, f"Checkpoint: {cert['issuer']['log_origin']} size {checkpoint['size']}"),
        (10, ""),
        (8, f"Signed JSON certificate, SHA-256 of its RFC 8785 form: {digest}"),
        (8, "Check the JSON offline: evault cert verify FILE --public-key vault.pem"),
    ]
    return lines


def _page(lines: list[tuple[int, str]]) -> bytes:
    writer = PdfWriter()
    page = writer.add_blank_page(_WIDTH, _HEIGHT)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
            NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
    )
    ops, y = ["BT"], _HEIGHT - 60
    for size, text in lines:
        ops.append(f"/F1 {size} Tf 1 0 0 1 50 {y:.1f} Tm {_text(text)} Tj")
        y -= size + 6
    ops.append("ET")
    stream = DecodedStreamObject()
    stream.set_data("\n".join(ops).encode("latin-1"))
    page[NameObject("/Contents")] = writer._add_object(stream)
    writer.add_metadata({"/Title": "UCC 9-105 certificate of control", "/Producer": "evault"})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _registry(cert: Any) -> SimpleCertificateStore:
    store: SimpleCertificateStore = SimpleCertificateStore.from_certs([cert])  # type: ignore[no-untyped-call]
    return store


def certificate_pdf(document: dict[str, Any], signer: DocumentSigner) -> bytes:
    """One page, signed PAdES-B with the document-signing identity."""
    cert, key = signer.asn1()
    pdf_signer = signers.SimpleSigner(signing_cert=cert, signing_key=key, cert_registry=_registry(cert))
    meta = signers.PdfSignatureMetadata(
        field_name="EvaultCertificate",
        subfilter=SigSeedSubFilter.PADES,
        reason="UCC 9-105 certificate issued by the vault",
    )
    out = signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(_page(page_lines(document)))), meta, pdf_signer)
    signed: bytes = out.getvalue()
    return signed
