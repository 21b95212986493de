"""The certificate as one page for people, PAdES-signed with the vault's document-signing identity.

The page states the verdict, each condition, the documents' hashes and their signatures' anomalies, the
assignee, the custodian, the vault-out (its date and transferee) and the checkpoint. The exact signed JSON
certificate it renders (its RFC 8785 bytes) is embedded as an associated file (PDF/A-3 style: ``/AF`` on the
catalog and an ``/EmbeddedFiles`` entry, ``/AFRelationship /Data``), and the page prints that file's SHA-256,
so a reader can extract it and check it with ``evault cert verify``. The file is embedded before signing, so
the PAdES signature covers it. The signature is PAdES baseline B (``ETSI.CAdES.detached``) with an ECDSA P-256
key, which common PDF readers validate; Ed25519 they do not.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import rfc8785
from pypdf import PdfWriter
from pypdf.generic import ArrayObject, DecodedStreamObject, DictionaryObject, NameObject, NumberObject, TextStringObject

from compliance.signatures.document_identity import DocumentSigner
from compliance.signatures.pades import sign_pades

_WIDTH, _HEIGHT, _MAX_CHARS = 612.0, 792.0, 120
ATTACHMENT = "certificate.json"  # the embedded file: the exact RFC 8785 bytes of the signed certificate


def _text(value: Any) -> str:
    text = str(value).encode("latin-1", "replace").decode("latin-1")
    text = text if len(text) <= _MAX_CHARS else text[: _MAX_CHARS - 3] + "..."
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def embedded_json(document: dict[str, Any]) -> bytes:
    """The bytes the PDF embeds and whose SHA-256 it prints: the signed certificate in RFC 8785 form."""
    return rfc8785.dumps(document)


def _release_lines(cert: dict[str, Any]) -> list[tuple[int, str]]:
    released = cert.get("vault_out")
    if not released:
        return [(10, "Vault-out: none (the authoritative copy is held here)")]
    transferee = (released.get("details") or {}).get("transferee") or {}
    to = " ".join(str(transferee[k]) for k in ("name", "vault_id") if transferee.get(k)) or "(none named)"
    return [(10, f"Vault-out: {released.get('reason')} on {released.get('at')}"), (10, f"Transferee: {to}")]


def _provenance_lines(cert: dict[str, Any]) -> list[tuple[int, str]]:
    """An imported record names the vault it came from: its log, its key and its release event."""
    origin = cert.get("imported_from")
    if not origin:
        return []
    return [
        (10, f"Imported on {origin.get('imported_at')} from {origin.get('log_origin')}"),
        (8, f"    origin key {origin.get('key_id')}, envelope {origin.get('envelope_id')}"),
        (8, f"    release receipt sha256 {origin.get('release_receipt_sha256')}"),
    ]


def _signature_lines(cert: dict[str, Any]) -> list[tuple[int, str]]:
    names = {d["id"]: d["filename"] for d in (cert.get("authoritative_copy") or {}).get("documents", [])}
    lines = []
    for item in cert.get("signatures", []):
        result = item.get("result") or {}
        name = names.get(item.get("document_id"), item.get("document_id"))
        if not result.get("signatures"):
            lines.append((8, f"Signatures of {name}: none embedded"))
            continue
        anomalies = ", ".join(result.get("anomalies") or []) or "none"
        lines.append((8, f"Signatures of {name}: {len(result['signatures'])}, anomalies: {anomalies}"))
    return lines


def _beside_lines(cert: dict[str, Any]) -> list[tuple[int, str]]:
    """Amendments and paper-in attestations: recorded beside the authoritative copy, never in it."""
    lines = [(10, f"Amendments: {len(cert.get('amendments', []))}")]
    for amendment in cert.get("amendments", []):
        count = len(amendment.get("documents") or [])
        lines.append(
            (8, f"    {amendment.get('type')} {amendment.get('id')} on {amendment.get('recorded_at')}, {count} PDF(s)")
        )
    for attestation in cert.get("paper_in_attestations", []):
        lines.append(
            (8, f"Paper original {attestation.get('original')} at {attestation.get('at')} (custodian's attestation)")
        )
    return lines


def _control_lines(cert: dict[str, Any]) -> list[tuple[int, str]]:
    """Who controls and keeps the record now, and each transfer that moved it (docs/transfers.md)."""
    control = cert.get("control")
    if not isinstance(control, dict):
        return []
    lines = [(10, f"Controller: {control['controller']}   custodian of record: {control['custodian']}")]
    for t in cert.get("transfers") or []:
        done = t.get("completed_at") or t.get("closed_at") or ""
        lines.append((8, f"Transfer {t['id']} ({t['type']}) {t['from_org']} -> {t['to_org']}: {t['status']} {done}"))
    return lines


def page_lines(document: dict[str, Any]) -> list[tuple[int, str]]:
    """(font size, text) of each line on the page."""
    cert = document["certificate"]
    envelope, conditions = cert["envelope"], cert["conditions"]
    digest = hashlib.sha256(embedded_json(document)).hexdigest()
    lines = [
        (16, "UCC 9-105 certificate of control"),
        (10, f"Envelope {envelope['id']}: {envelope['title']}"),
        *([(10, f"MERS MIN: {envelope['min']}")] if envelope.get("min") else []),
        (10, f"Verdict: {conditions['verdict'].upper()}   issued {cert['issued_at']}"),
        (10, ""),
    ]
    lines += [(9, f"({r['condition']}) {r['status'].upper()}: {r['title']}") for r in conditions["conditions"]]
    lines += [(10, ""), (10, "Authoritative copy")]
    copy = cert.get("authoritative_copy") or {"documents": []}
    for doc in copy["documents"]:
        lines.append((8, f"{doc['filename']}  version {doc['version_id']}  lock {doc['lock_mode']}"))
        lines.append((8, f"    SHA-256 {doc['sha256']}"))
    lines += _signature_lines(cert)
    assignee = cert.get("assignee_of_record") or {}
    custodian = cert["custodian"]
    checkpoint = cert["ledger"]["checkpoint"]
    lines += [
        (10, ""),
        (10, f"Assignee of record: {assignee.get('name', '(none)')}"),
        (10, f"Custodian: {custodian['name']} ({custodian['id']})"),
        *_control_lines(cert),
        (10, f"Copies issued: {len(cert['copies'])}"),
        *_beside_lines(cert),
        *_release_lines(cert),
        *_provenance_lines(cert),
        (10, f"Checkpoint: {cert['issuer']['log_origin']} size {checkpoint['size']}"),
        (10, ""),
        (8, f"The signed JSON certificate is embedded in this PDF as {ATTACHMENT}, SHA-256 of that file:"),
        (8, f"    {digest}"),
        (8, f"Extract it and check it offline: evault cert verify {ATTACHMENT} --public-key vault.pem"),
    ]
    return lines


def _attach(writer: PdfWriter, data: bytes) -> None:
    """Embed the certificate as an associated file of the document (``/AF``), as PDF/A-3 does."""
    attached = writer.add_attachment(ATTACHMENT, data)
    attached.subtype = NameObject("/application#2Fjson")
    attached.description = TextStringObject("The signed evault-certificate/v1 this page renders (RFC 8785)")
    attached.associated_file_relationship = NameObject("/Data")
    attached.size = NumberObject(len(data))
    filespec = attached.pdf_object
    filespec[NameObject("/UF")] = TextStringObject(ATTACHMENT)
    assert filespec.indirect_reference is not None  # added as an object by add_attachment
    writer._root_object[NameObject("/AF")] = ArrayObject([filespec.indirect_reference])


def _page(lines: list[tuple[int, str]], attachment: bytes) -> bytes:
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
    _attach(writer, attachment)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def certificate_pdf(document: dict[str, Any], signer: DocumentSigner, tsa_url: str | None = None) -> bytes:
    """One page carrying the certificate's JSON, signed PAdES with the document-signing identity (with its TSA's
    timestamp when one is configured)."""
    page = _page(page_lines(document), embedded_json(document))
    return sign_pades(page, signer, "EvaultCertificate", "UCC 9-105 certificate issued by the vault", tsa_url)
