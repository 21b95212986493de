"""Checking an evidence package offline, with nothing but the vault's public key: any altered byte fails.

In order (docs/evidence-package.md): the zip holds exactly the manifest and the files it names, once each;
the manifest's Ed25519 signature by the trusted key (or one that follows from it); every file's SHA-256 and
size. Then the contents against each other, so that a package the vault itself assembled wrongly fails too: the
certificate and the proof bundle verify and are the same envelope's, and the bundle is the one the certificate
embeds; each authoritative PDF is the document the certificate (hence the vault-in entry) names, by hash and
size; the copy register is exactly the copies the chain records; the audit trail's entries are the chain's,
from its start; every receipt verifies and is about the envelope, and a released record has its release
receipt; the certificate PDF's PAdES signature is intact, covers the whole file, and chains to the
document-signing certificate of the package's keys; and that PDF embeds the certificate's exact bytes.
Every failure raises :class:`PackageInvalid` (or the error of the artefact that failed).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import zipfile
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from pypdf import PdfReader

from compliance import strict_json
from compliance.bundles.proof_bundle import VerifiedBundle, verify_bundle
from compliance.certificates.issuance import key_id_of
from compliance.certificates.offline_check import VerifiedCertificate, verify_certificate
from compliance.certificates.pdf_page import ATTACHMENT
from compliance.checkpoints.auditor_memory import load_trusted_key
from compliance.checkpoints.policy import CheckpointTrust
from compliance.conditions.projection import fold
from compliance.errors import InvalidInput
from compliance.evidence_package.manifest import FORMAT, MANIFEST, PATH, canonical_zip
from compliance.ledger.key_history import KeySet
from compliance.ledger.log_error import LogError
from compliance.pdf_bytes import PdfBytes
from compliance.receipts.offline_check import VerifiedReceipt, verify_receipt
from compliance.signatures.pdf_validation import load_trust_roots, validate_signatures

MALFORMED, BAD_SIGNATURE = "Package.Malformed", "Package.BadSignature"
ALTERED, INCONSISTENT = "Package.Altered", "Package.Inconsistent"
MAX_FILES, MAX_BYTES = 10_000, 4 * 1024**3  # what a directory may declare, checked before anything is read


class PackageInvalid(InvalidInput):
    """The package is not what the vault signed, or its parts contradict each other."""


@dataclass(frozen=True)
class VerifiedPackage:
    manifest: dict[str, Any]
    certificate: VerifiedCertificate
    bundle: VerifiedBundle
    receipts: dict[str, VerifiedReceipt]
    documents: list[str]  # the authoritative PDFs' paths


def _get(obj: Any, name: str, kind: type) -> Any:
    value = obj.get(name) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise PackageInvalid(MALFORMED, f"field {name!r} is missing or malformed")
    return value


def stored_plainly(entry: zipfile.ZipInfo) -> bool:
    """A zip entry as the vault writes a package's (docs/evidence-package.md): stored, so never inflated here,
    and with no flags, so zipfile reads it (an encrypted or patched entry makes it raise, not refuse)."""
    return entry.compress_type == zipfile.ZIP_STORED and not entry.flag_bits


def _files(data: bytes) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
        names = [i.filename for i in infos]
        if len(infos) > MAX_FILES or sum(i.file_size for i in infos) > MAX_BYTES:
            raise PackageInvalid(MALFORMED, "the package is larger than a package may be")
        if not all(stored_plainly(i) for i in infos):
            raise PackageInvalid(
                ALTERED, "the zip compresses a file or sets flags on it: a package stores its files as they are"
            )
        if len(set(names)) != len(names):
            raise PackageInvalid(MALFORMED, "the zip names one file twice")
        if not all(PATH.fullmatch(n) and ".." not in n for n in names):
            raise PackageInvalid(MALFORMED, "the zip holds a path that is not a package path")
        files = {name: archive.read(name) for name in names}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, PackageInvalid):
            raise
        raise PackageInvalid(ALTERED, f"the package is not a readable zip: {exc}") from None
    if canonical_zip(files) != data:
        raise PackageInvalid(ALTERED, "the zip is not laid out as the vault lays out packages: it was changed")
    return files


def _need(files: dict[str, bytes], path: str) -> bytes:
    if path not in files:
        raise PackageInvalid(MALFORMED, f"the package has no {path}")
    return files[path]


def _json(files: dict[str, bytes], path: str) -> Any:
    try:
        return strict_json.loads(_need(files, path))
    except ValueError as exc:
        raise PackageInvalid(MALFORMED, f"{path} is not JSON", error=str(exc)) from None


def _check_manifest(files: dict[str, bytes], trusted_pem: bytes, keys: KeySet) -> dict[str, Any]:
    document = _json(files, MANIFEST)
    body: dict[str, Any]
    body, signature = _get(document, "manifest", dict), _get(document, "signature", dict)
    chain = body.get("key_chain", [])
    if not isinstance(chain, list) or not all(isinstance(n, str) for n in chain):
        raise PackageInvalid(MALFORMED, "key_chain must be a list of rotation statements")
    try:
        history = keys.history(load_trusted_key(trusted_pem), chain)
    except LogError as exc:
        raise PackageInvalid(BAD_SIGNATURE, f"the package's keys do not follow from yours: {exc.message}") from None
    period = {key_id_of(p.public_key): p for p in history.periods}.get(_get(signature, "key_id", str))
    if _get(signature, "alg", str) != "Ed25519" or period is None:
        raise PackageInvalid(BAD_SIGNATURE, "the manifest is not signed by the key you trust (or its successors)")
    try:
        period.public_key.verify(base64.b64decode(_get(signature, "value", str), validate=True), rfc8785.dumps(body))
    except (InvalidSignature, binascii.Error, ValueError, rfc8785.CanonicalizationError):
        raise PackageInvalid(BAD_SIGNATURE, "the manifest's signature does not verify") from None
    if period.compromised_since is not None:
        raise PackageInvalid(BAD_SIGNATURE, "the manifest is signed by a key revoked as compromised")
    if _get(body, "format", str) != FORMAT:
        raise PackageInvalid(MALFORMED, f"manifest format must be {FORMAT}")
    listed = _get(body, "files", list)
    paths = [_get(item, "path", str) for item in listed]
    if list(files) != [MANIFEST, *paths]:
        raise PackageInvalid(ALTERED, "the zip's files are not exactly those the manifest names, in its order")
    for item in listed:
        data = files[item["path"]]
        if hashlib.sha256(data).hexdigest() != _get(item, "sha256", str) or len(data) != _get(item, "size", int):
            raise PackageInvalid(ALTERED, f"{item['path']} is not the file the manifest names", path=item["path"])
    return body


def _check_documents(files: dict[str, bytes], certificate: dict[str, Any]) -> list[str]:
    documents = (certificate.get("authoritative_copy") or {}).get("documents", [])
    expected = {f"documents/{d['id']}.pdf": d for d in documents}
    if {p for p in files if p.startswith("documents/")} != set(expected):
        raise PackageInvalid(INCONSISTENT, "the package's documents are not the certificate's")
    for path, doc in expected.items():
        if hashlib.sha256(files[path]).hexdigest() != doc["sha256"] or len(files[path]) != doc["size"]:
            raise PackageInvalid(INCONSISTENT, f"{path} is not the vaulted document", path=path)
    return sorted(expected)


def _check_register(files: dict[str, bytes], bundle: VerifiedBundle) -> None:
    register = _get(_json(files, "copies/register.json"), "copies", list)
    fields = ("document_id", "sha256", "source_sha256")
    shown = sorted(
        (str(c.get("id")), *(c.get(f) for f in fields), c.get("issued_at")) for c in register if isinstance(c, dict)
    )
    logged = sorted(
        (copy_id, *(e["data"].get(f) for f in fields), e["time"])
        for copy_id, e in fold(bundle.envelope_id, bundle.events).copies.items()
    )
    if len(shown) != len(register) or shown != logged:
        raise PackageInvalid(INCONSISTENT, "the copy register is not the copies the ledger records")


def _check_trail(files: dict[str, bytes], bundle_json: dict[str, Any], envelope_id: str) -> None:
    trail = _json(files, "audit/trail.json")
    if trail.get("envelope_id") != envelope_id:
        raise PackageInvalid(INCONSISTENT, "the audit trail is another envelope's")
    shown = [e.get("entry") for e in _get(trail, "events", list) if isinstance(e, dict)]
    proven = [e["entry"] for e in bundle_json["events"]]
    if not shown or shown != proven[: len(shown)]:
        raise PackageInvalid(INCONSISTENT, "the audit trail's entries are not the proven chain's")
    for event in trail["events"]:
        raw = base64.b64decode(str(event.get("entry")))
        if event.get("entry_hash") != hashlib.sha256(raw).hexdigest():
            raise PackageInvalid(INCONSISTENT, "an audit trail row's hash is not its entry's", seq=event.get("seq"))


def _check_pdf(files: dict[str, bytes], document_json: bytes) -> None:
    pdf = files.get("certificate/certificate.pdf")
    if pdf is None:
        return
    keys = _json(files, "keys/keys.json")
    pems = [k["pem"] for k in _get(keys, "keys", list) if isinstance(k, dict) and k.get("use") == "document-signing"]
    verdicts = validate_signatures(pdf, load_trust_roots("".join(pems).encode()))
    signed = [v for v in verdicts.verdicts if v.kind == "signature"]
    if len(signed) != 1 or not signed[0].bottom_line or signed[0].coverage != "ENTIRE_FILE":
        raise PackageInvalid(INCONSISTENT, "the certificate PDF's signature is not sound over the whole file")
    try:
        attached = PdfReader(PdfBytes(pdf)).attachments.get(ATTACHMENT, [])
    except Exception:  # a PDF pypdf cannot read holds no checkable attachment
        attached = []
    if attached != [rfc8785.dumps(strict_json.loads(document_json))]:
        raise PackageInvalid(INCONSISTENT, "the certificate PDF does not embed the package's certificate")


def verify_package(
    data: bytes, trusted_pem: bytes, trust: CheckpointTrust | None = None, keys: KeySet | None = None
) -> VerifiedPackage:
    """Check a package from the auditor's key; ``keys`` adds rotations and revocations (else the package's own
    key set, whose statements are each checked from the auditor's key all the same)."""
    files = _files(data)
    if keys is None and "keys/keys.json" in files:
        try:
            keys = KeySet.parse(files["keys/keys.json"])
        except LogError:
            raise PackageInvalid(MALFORMED, "keys/keys.json is not the vault's key set") from None
    keys = keys or KeySet()
    manifest = _check_manifest(files, trusted_pem, keys)
    envelope_id = _get(manifest, "envelope_id", str)
    certificate = verify_certificate(_need(files, "certificate/certificate.json"), trusted_pem, trust, keys)
    bundle_json = _json(files, "proof/bundle.json")
    bundle = verify_bundle(_need(files, "proof/bundle.json"), trusted_pem, keys=keys, trust=trust)
    if bundle.envelope_id != envelope_id or certificate.bundle.envelope_id != envelope_id:
        raise PackageInvalid(INCONSISTENT, "the certificate or the bundle is another envelope's")
    if bundle_json != certificate.certificate["ledger"]["bundle"]:
        raise PackageInvalid(INCONSISTENT, "the proof bundle is not the one the certificate rests on")
    if _need(files, "proof/checkpoint.txt").decode(errors="replace") != bundle_json["checkpoint"]:
        raise PackageInvalid(INCONSISTENT, "proof/checkpoint.txt is not the bundle's checkpoint")
    documents = _check_documents(files, certificate.certificate)
    _check_register(files, bundle)
    _check_trail(files, bundle_json, envelope_id)
    receipts = {}
    for path in sorted(p for p in files if p.startswith("receipts/")):
        receipts[path] = verify_receipt(files[path], trusted_pem, trust, keys)
        if receipts[path].receipt["envelope_id"] != envelope_id:
            raise PackageInvalid(INCONSISTENT, f"{path} is about another envelope")
    if certificate.certificate["envelope"]["vault_state"] == "released" and "receipts/release.json" not in receipts:
        raise PackageInvalid(INCONSISTENT, "a released record's package lacks its release receipt")
    _check_pdf(files, files["certificate/certificate.json"])
    return VerifiedPackage(manifest, certificate, bundle, receipts, documents)
