"""PAdES signing of the vault's own PDFs (certificate pages, certified copies) with its document-signing identity.

PAdES baseline B (``ETSI.CAdES.detached``; pyHanko's default subfilter is not PAdES) with the ECDSA P-256
identity, which common PDF readers validate; with a TSA configured the signature carries its RFC 3161
timestamp (PAdES-B-T), so when it was signed needs no trust in the vault's clock.
"""

from __future__ import annotations

import io
from typing import Any

from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers, timestamps
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko_certvalidator.registry import SimpleCertificateStore

from compliance.signatures.document_identity import DocumentSigner


def _registry(cert: Any) -> SimpleCertificateStore:
    store: SimpleCertificateStore = SimpleCertificateStore.from_certs([cert])  # type: ignore[no-untyped-call]
    return store


def sign_pades(pdf: bytes, signer: DocumentSigner, field_name: str, reason: str, tsa_url: str | None = None) -> bytes:
    """``pdf`` with one PAdES signature covering the whole file, appended as an incremental update."""
    cert, key = signer.asn1()
    pdf_signer = signers.SimpleSigner(signing_cert=cert, signing_key=key, cert_registry=_registry(cert))
    meta = signers.PdfSignatureMetadata(field_name=field_name, subfilter=SigSeedSubFilter.PADES, reason=reason)
    timestamper = timestamps.HTTPTimeStamper(tsa_url, timeout=10) if tsa_url else None
    out = signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(pdf)), meta, pdf_signer, timestamper=timestamper)
    signed: bytes = out.getvalue()
    return signed
