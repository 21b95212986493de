"""Checking an export package before a vault imports it: every part, against the sending vault's trusted key.

The receiving vault trusts nothing the package says about itself. In order: the manifest is signed by one of
the keys the operator trusts for the sending vault (or a key that follows from one by the rotations the package
carries), else ``Import.UntrustedKey``; then the whole evidence-package check
(:func:`compliance.evidence_package.offline_check.verify_package`: every file's SHA-256, the certificate, the
proof bundle with its checkpoint signature and head-map proof, every receipt); then that the release receipt
releases the record *to this vault* for a transfer and that its release is still the head of the envelope's
history at the package's checkpoint (nothing changed control after it); then every embedded PDF signature
(pyHanko, against this vault's own signer trust roots). Each failure is an :class:`ImportRefused` with a named
code; nothing is written before all of this has passed (docs/vault-transfer.md).
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from dataclasses import dataclass
from typing import Any

from asn1crypto import x509 as asn1_x509

from compliance import strict_json
from compliance.certificates.issuance import key_id_of
from compliance.checkpoints.auditor_memory import load_trusted_key
from compliance.errors import Conflict, EvaultError, InvalidInput
from compliance.evidence_package.manifest import MANIFEST
from compliance.evidence_package.offline_check import VerifiedPackage, stored_plainly, verify_package
from compliance.ledger.key_history import KeySet
from compliance.ledger.log_error import LogError
from compliance.signatures.pdf_validation import validate_signatures

BAD_SIGNATURE, PROOF_INVALID, HASH_MISMATCH = "Import.BadSignature", "Import.ProofInvalid", "Import.HashMismatch"
UNTRUSTED_KEY, ALREADY_IMPORTED = "Import.UntrustedKey", "Import.AlreadyImported"
MALFORMED, INCONSISTENT = "Import.Malformed", "Import.Inconsistent"
NOT_ADDRESSED, RELEASE_NOT_HEAD, SEAL_INVALID = "Import.NotAddressed", "Import.ReleaseNotHead", "Import.SealInvalid"
RELEASE = "receipts/release.json"


class ImportRefused(InvalidInput):
    """The package is refused: what it shows is not proven by the sending vault's key, or is not for us."""


def already_imported(**details: Any) -> Conflict:
    return Conflict(ALREADY_IMPORTED, "this release was imported into this vault already", **details)


@dataclass(frozen=True)
class ImportedDocument:
    position: int
    filename: str
    data: bytes
    sha256: str
    pages: int
    signatures: dict[str, Any] | None  # pyHanko's graded result here, as a vault-in keeps it


@dataclass(frozen=True)
class VerifiedExport:
    """A package that passed every check: what the receiving vault records, and where it came from."""

    package: VerifiedPackage
    documents: list[ImportedDocument]
    origin: dict[str, Any]  # the provenance the envelope.imported entry records
    kind: str
    title: str
    source: str
    secured_party: dict[str, Any]

    @property
    def origin_log(self) -> str:
        return str(self.origin["log_origin"])

    @property
    def release_leaf_index(self) -> int:
        return int(self.origin["release"]["leaf_index"])


def _classify(exc: EvaultError) -> ImportRefused:
    """One named reason for whatever the evidence checks refused, the original code kept in the details."""
    code, details = exc.code, {**exc.details, "reason": exc.code}
    path = str(exc.details.get("path", ""))
    if code == "Package.Altered" or (code == "Package.Inconsistent" and path.startswith("documents/")):
        named = HASH_MISMATCH
    elif code.endswith((".BadSignature", ".WrongKey", ".KeyCompromised", ".KeyChainBroken")):
        named = BAD_SIGNATURE
    elif isinstance(exc, LogError):
        named = PROOF_INVALID
    elif code.endswith(".Malformed"):
        named = MALFORMED
    else:
        named = INCONSISTENT
    return ImportRefused(named, exc.message, **details)


def _signer(data: bytes, trusted: list[bytes]) -> tuple[bytes, str]:
    """The trusted PEM whose key (or a successor the package's rotations prove) signed the manifest, and the id of
    the key that signed it."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entry = archive.getinfo(MANIFEST)
            if not stored_plainly(entry) or entry.file_size > len(data):
                raise ValueError("the manifest is not stored as a package stores it (plain, no flags)")
            document = strict_json.loads(archive.read(entry))
        key_id = document["signature"]["key_id"]
        chain = document["manifest"].get("key_chain", [])
    except (zipfile.BadZipFile, KeyError, TypeError, ValueError, AttributeError, OSError, EOFError) as exc:
        raise ImportRefused(MALFORMED, f"the package has no readable signed manifest: {exc}") from None
    for pem in trusted:
        try:
            periods = KeySet().history(load_trusted_key(pem), chain).periods
        except (LogError, ValueError):
            continue
        if key_id in {key_id_of(p.public_key) for p in periods}:
            return pem, str(key_id)
    raise ImportRefused(
        UNTRUSTED_KEY, "the package is not signed by a key you trust for the sending vault", key_id=key_id
    )


def _release(package: VerifiedPackage, vault_id: str) -> dict[str, Any]:
    """The release receipt's release event, once it is shown to hand the record to this vault, and to be the
    envelope's head at the package's checkpoint (no event, so no change of control, followed it)."""
    receipt = package.receipts.get(RELEASE)
    if receipt is None:
        raise ImportRefused(INCONSISTENT, "the package has no release receipt: the record was not released")
    fields = receipt.fields
    named = fields.get("transferee")
    transferee: dict[str, Any] = named if isinstance(named, dict) else {}
    if fields.get("reason") != "transfer" or transferee.get("vault_id") != vault_id:
        raise ImportRefused(
            NOT_ADDRESSED,
            "the record was not released for a transfer to this vault",
            reason=fields.get("reason"),
            transferee_vault_id=transferee.get("vault_id"),
            this_vault=vault_id,
        )
    release = receipt.events["release"]
    head = package.bundle.events[-1] if package.bundle.events else None
    if head != release:
        raise ImportRefused(
            RELEASE_NOT_HEAD,
            "the release is not the envelope's last event at the package's checkpoint: something followed it",
            head_type=(head or {}).get("type"),
        )
    return release


def _documents(
    package: VerifiedPackage, files: dict[str, bytes], roots: list[asn1_x509.Certificate], require_trusted: bool
) -> list[ImportedDocument]:
    """Each authoritative PDF with its seals re-validated here (pyHanko), as a vault-in would."""
    documents = []
    listed = package.certificate.certificate["authoritative_copy"]["documents"]
    for doc in sorted(listed, key=lambda d: int(d["position"])):
        data = files[f"documents/{doc['id']}.pdf"]
        result = validate_signatures(data, roots)
        if result.verdicts and (
            not result.acceptable or (require_trusted and not all(v.trusted for v in result.verdicts))
        ):
            raise ImportRefused(
                SEAL_INVALID,
                "an embedded signature does not verify here, or its signer is not trusted by this vault",
                document_id=doc["id"],
                signatures=result.as_json(),
            )
        documents.append(
            ImportedDocument(
                int(doc["position"]),
                str(doc["filename"]),
                data,
                hashlib.sha256(data).hexdigest(),
                int(doc.get("pages") or 0),
                result.as_json() if result.verdicts else None,
            )
        )
    return documents


def verify_export(
    data: bytes,
    trusted: list[bytes],
    vault_id: str,
    roots: list[asn1_x509.Certificate],
    require_trusted_signers: bool = False,
) -> VerifiedExport:
    """Every check of the module docstring, in its order; :class:`ImportRefused` names the first that fails."""
    if not trusted:
        raise ImportRefused(UNTRUSTED_KEY, "name the sending vault's public key (--trusted-key)")
    pem, key_id = _signer(data, trusted)
    try:
        package = verify_package(data, pem)
    except EvaultError as exc:
        raise _classify(exc) from None
    release = _release(package, vault_id)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    certificate = package.certificate.certificate
    envelope, copy = certificate["envelope"], certificate["authoritative_copy"]
    checkpoint, bundle = package.bundle.checkpoint, certificate["ledger"]["bundle"]
    origin = {
        "vault_id": certificate["custodian"]["id"],
        "log_origin": checkpoint.origin,
        "key_id": key_id,  # the key whose signature over the manifest verified
        "envelope_id": envelope["id"],
        "authoritative_copy_id": copy["id"],
        "release": {
            "leaf_index": release["index"],
            "seq": release["seq"],
            "time": release["time"],
            "entry_sha256": hashlib.sha256(base64.b64decode(bundle["events"][-1]["entry"])).hexdigest(),
        },
        "release_receipt_sha256": hashlib.sha256(files[RELEASE]).hexdigest(),
        "checkpoint": {"size": checkpoint.size, "root_hash": checkpoint.root_hash.hex(), "note": bundle["checkpoint"]},
        "transfer_receipts": sorted(p for p in package.receipts if p != RELEASE),
    }
    return VerifiedExport(
        package,
        _documents(package, files, roots, require_trusted_signers),
        origin,
        str(envelope["kind"]),
        str(envelope["title"]),
        str(copy["source"]),
        dict(certificate["assignee_of_record"] or {}),
    )
