"""Building an envelope's evidence package: one zip a custodian hands an auditor or a court.

It holds the authoritative PDFs (re-read from WORM storage and checked against their vaulted hashes), the copy
register, the signed certificate (JSON, and the PAdES-signed PDF when the vault has a document-signing
identity), the audit trail, the proof bundle the certificate rests on (its checkpoint carries any witness
cosignatures, and its RFC 3161 token when one was taken), the receipts (the release receipt after a vault-out),
the vault's public keys, and a signed manifest of every file's SHA-256. The format is docs/evidence-package.md;
``compliance/evidence_package/offline_check.py`` checks it. The audit trail is read before the certificate,
so every event it shows is in the certificate's bundle.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select

from compliance.audit.trail import audit_trail
from compliance.certificates.issuance import issue_certificate, key_id_of
from compliance.certificates.pdf_page import certificate_pdf
from compliance.checkpoints.freshness import SignsOnDemand
from compliance.conditions.evidence import Policy
from compliance.errors import Conflict, EvaultError, Unavailable
from compliance.evidence_package.manifest import FORMAT, MANIFEST, canonical_zip, file_entry, signed_manifest
from compliance.ledger.chain import parse_entry
from compliance.ledger.event_catalogue import DISPOSED
from compliance.ledger.events import Actor
from compliance.ledger.vault_key import VaultKey
from compliance.receipts.release import release_receipt
from compliance.receipts.transfer import transfer_receipt
from compliance.signatures.document_identity import DocumentSigner
from compliance.sources import Sources
from storage.errors import ChecksumMismatch, StorageError
from storage.ids import iso, utcnow
from storage.models import CopyRecord, Transfer


class PackageIntegrity(EvaultError):
    """What storage returned is not what was vaulted: never packaged as evidence."""

    category = "integrity"


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=1, ensure_ascii=False) + "\n").encode()


def _document(sources: Sources, doc: Mapping[str, Any]) -> bytes:
    integrity, where = "Vault.IntegrityFailure", {"document_id": doc["id"]}
    try:
        data = sources.authoritative.read(str(doc["key"]), str(doc["version_id"]))
    except ChecksumMismatch as exc:
        raise PackageIntegrity(integrity, "stored bytes fail their checksum", **where) from exc
    except StorageError as exc:
        raise Unavailable("Storage.Unavailable", "object storage could not be read; retry") from exc
    if hashlib.sha256(data).hexdigest() != doc["sha256"]:
        raise PackageIntegrity(integrity, "stored bytes differ from the vaulted hash", **where)
    return data


def copy_register(sources: Sources, envelope_id: str) -> list[dict[str, Any]]:
    """The register's rows for the envelope, in issue order (the verifier compares them with the chain)."""
    with sources.db.read_session() as session:
        rows = session.exec(
            select(CopyRecord)
            .where(CopyRecord.envelope_id == envelope_id)
            .order_by(col(CopyRecord.issued_at), col(CopyRecord.id))
        )
        return [
            {
                "id": r.id,
                "document_id": r.document_id,
                "sha256": r.sha256,
                "source_sha256": r.source_sha256,
                "size": r.size,
                "issued_at": iso(r.issued_at),
                "bucket": r.s3_bucket,
                "key": r.s3_key,
                "version_id": r.s3_version_id,
            }
            for r in rows
        ]


def _completed_transfers(sources: Sources, envelope_id: str) -> list[tuple[str, str]]:
    """The record's completed transfers of control, oldest first: (id, receiving organisation)."""
    with sources.db.read_session() as session:
        rows = session.exec(
            select(Transfer.id, Transfer.to_org_id)
            .where(Transfer.envelope_id == envelope_id, Transfer.status == "completed")
            .order_by(col(Transfer.created_at), col(Transfer.id))
        )
        return [(transfer_id, to_org) for transfer_id, to_org in rows]


@dataclass(frozen=True)
class PackageIssuer:
    """The vault as it issues a package: what signs its parts and what it publishes about itself. One value,
    because every kind of package (evidence, export) is issued with the same."""

    key: VaultKey
    checkpoints: SignsOnDemand
    policy: Policy
    keys_document: dict[str, Any]
    signer: DocumentSigner | None
    tsa_url: str | None


def build_package(sources: Sources, issuer: PackageIssuer, actor: Actor, envelope_id: str) -> bytes:
    """The zip of one of the actor's envelopes (404 ``Envelope.NotFound`` for anyone else's), with the signed
    receipt of every transfer of control the record went through (``receipts/transfer-tr_....json``) and of its
    release (``receipts/release.json``)."""
    key, checkpoints = issuer.key, issuer.checkpoints
    trail = audit_trail(sources, actor.org_id, envelope_id)
    certificate = issue_certificate(sources, key, checkpoints, issuer.policy, actor, envelope_id)
    body = certificate["certificate"]
    if any(
        parse_entry(base64.b64decode(e["entry"]))["type"] == DISPOSED.name for e in body["ledger"]["bundle"]["events"]
    ):
        raise Conflict("Retention.Disposed", "the authoritative copy was disposed of: its documents cannot be packaged")
    files: dict[str, bytes] = {}
    for doc in (body.get("authoritative_copy") or {}).get("documents", []):
        sources.deadline.check()
        files[f"documents/{doc['id']}.pdf"] = _document(sources, doc)
    files["copies/register.json"] = _json({"envelope_id": envelope_id, "copies": copy_register(sources, envelope_id)})
    files["certificate/certificate.json"] = _json(certificate)
    if issuer.signer is not None:
        files["certificate/certificate.pdf"] = certificate_pdf(certificate, issuer.signer, issuer.tsa_url)
    files["audit/trail.json"] = _json(trail)
    bundle = body["ledger"]["bundle"]
    files["proof/bundle.json"] = _json(bundle)
    files["proof/checkpoint.txt"] = str(bundle["checkpoint"]).encode()
    if bundle.get("timestamp_token"):
        files["proof/checkpoint.tsr"] = base64.b64decode(bundle["timestamp_token"])
    if body["envelope"]["vault_state"] == "released":
        files["receipts/release.json"] = _json(release_receipt(sources, key, checkpoints, actor, envelope_id))
    for transfer_id, receiver in _completed_transfers(sources, envelope_id):
        sources.deadline.check()
        # Either party may read a transfer's receipt; its events are in the package's proof bundle anyway.
        receipt = transfer_receipt(sources, key, checkpoints, Actor(receiver), transfer_id)
        files[f"receipts/transfer-{transfer_id}.json"] = _json(receipt)
    files["keys/keys.json"] = _json(issuer.keys_document)
    sources.deadline.check()
    manifest = {
        "format": FORMAT,
        "envelope_id": envelope_id,
        "org_id": actor.org_id,
        "log_origin": body["issuer"]["log_origin"],
        "created_at": iso(utcnow()),
        "issuer": {"key_id": key_id_of(key.public_key)},
        "files": [file_entry(path, data) for path, data in files.items()],
        **({"key_chain": bundle["key_chain"]} if bundle.get("key_chain") else {}),
    }
    return canonical_zip({MANIFEST: _json(signed_manifest(manifest, key)), **files})
