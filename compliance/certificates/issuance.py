"""§9-105 certificates (``evault-certificate/v1``): what the vault asserts about one envelope, now, signed.

``{"certificate": {...}, "signature": {"alg": "Ed25519", "key_id": "sha256:<hex of the key's SPKI DER>",
"value": <base64>}}``. The signature is Ed25519 over the RFC 8785 encoding of ``certificate``, so it verifies
whatever the JSON's layout on the wire, with the same key that signs checkpoints. The certificate embeds the
envelope's v2 proof bundle (every event, inclusion proofs, the head map proof, the signed checkpoint), so its
claims about the history can be re-checked offline (``compliance/certificates/offline_check.py``).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlmodel import select

from compliance import strict_json
from compliance.bundles.proof_bundle import build_bundle
from compliance.checkpoints.freshness import SignsOnDemand, checkpoint_for_envelope
from compliance.conditions.evidence import Policy
from compliance.conditions.policies import Verdict, check_compliance
from compliance.conditions.projection import (
    Projection,
    amendment_claims,
    control_claim,
    fold,
    hold_claim,
    import_claim,
    paper_in_claims,
    release_claim,
    transfers_claim,
)
from compliance.errors import NotFound
from compliance.ledger.events import Actor
from compliance.ledger.vault_key import VaultKey
from compliance.sources import Sources
from storage.ids import iso, utcnow
from storage.models import Checkpoint as CheckpointRow
from storage.models import Envelope, Organisation, VaultedDocument, VaultRecord

FORMAT = "evault-certificate/v1"


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """Names the key by what the verifier holds (its PEM), not by a name the signer chose."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def sign_certificate(body: dict[str, Any], key: VaultKey) -> dict[str, Any]:
    value = key.sign(rfc8785.dumps(body))
    return {
        "certificate": body,
        "signature": {"alg": "Ed25519", "key_id": key_id_of(key.public_key), "value": base64.b64encode(value).decode()},
    }


def _documents(docs: list[VaultedDocument], verdict: Verdict) -> list[dict[str, Any]]:
    live = {d["id"]: d for d in verdict.results[0].evidence.get("documents", [])}
    return [
        {
            "id": doc.id,
            "position": doc.position,
            "filename": doc.filename,
            "sha256": doc.sha256,
            "size": doc.size,
            "pages": doc.page_count,
            "bucket": doc.s3_bucket,
            "key": doc.s3_key,
            "version_id": doc.s3_version_id,
            "lock_mode": live.get(doc.id, {}).get("lock_mode"),
            "lock_retain_until": live.get(doc.id, {}).get("retain_until"),
        }
        for doc in docs
    ]


def _copies(chain: Projection) -> list[dict[str, Any]]:
    """The copies as their ``vault.copy_issued`` entries state them, in the order they were issued."""
    return [
        {
            "id": copy_id,
            "document_id": e["data"].get("document_id"),
            "sha256": e["data"].get("sha256"),
            "issued_at": e["time"],
        }
        for copy_id, e in chain.copies.items()
    ]


def certificate_body(
    sources: Sources, key: VaultKey, policy: Policy, envelope_id: str, checkpoint: CheckpointRow, verdict: Verdict
) -> dict[str, Any]:
    with sources.db.read_session() as session:
        envelope = session.get(Envelope, envelope_id)
        assert envelope is not None  # the check above found it
        record = session.exec(select(VaultRecord).where(VaultRecord.envelope_id == envelope_id)).first()
        docs = (
            []
            if record is None
            else list(session.exec(select(VaultedDocument).where(VaultedDocument.record_id == record.id)))
        )
        docs.sort(key=lambda d: d.position)
        bundle = build_bundle(session, key, envelope_id, checkpoint)
        organisation = session.get(Organisation, envelope.org_id)
    events = bundle["events"]
    head = base64.b64decode(events[-1]["entry"]) if events else None
    # What the ledger records (state, copies, vault-out) is stated as the proven chain says it, never as a row
    # says it: a row the chain does not support fails condition 6 instead of being certified.
    chain = fold(envelope_id, (strict_json.loads(base64.b64decode(item["entry"])) for item in events))
    history = verdict.results[1].evidence.get("history", [])
    return {
        "format": FORMAT,
        "issued_at": iso(utcnow()),
        "issuer": {"key_id": key_id_of(key.public_key), "log_origin": sources.origin(envelope.org_id)},
        "envelope": {
            "id": envelope.id,
            "org_id": envelope.org_id,
            "kind": envelope.kind,
            "title": envelope.title,
            "external_id": envelope.external_id,
            "vault_state": chain.vault_state,
            "min": (chain.created or {}).get("min"),  # as envelope.created registered it
        },
        # The organisation's registry identity as the vault holds it now (an organisation-level setting, logged
        # in org.mers_org_id_set; not part of this envelope's chain, so the vault's signature vouches for it).
        "organisation": {
            "id": envelope.org_id,
            "mers_org_id": organisation.mers_org_id if organisation is not None else None,
        },
        "authoritative_copy": None
        if record is None
        else {
            "id": record.id,
            "source": record.source,
            "vaulted_at": iso(record.vaulted_at),
            "retain_until": chain.retain_until,
            "legal_hold": hold_claim(chain),
            "documents": _documents(docs, verdict),
        },
        "assignee_of_record": history[-1]["secured_party"] if history else None,
        "assignee_history": history,
        "custodian": policy.custodian.as_json(),
        # Who controls and who keeps the record now, and every transfer that got it there (docs/transfers.md).
        "control": control_claim(chain, envelope.org_id),
        "transfers": transfers_claim(chain),
        "copies": _copies(chain),
        "vault_out": release_claim(chain),
        # An imported record's provenance: the origin vault's key, log, release receipt and checkpoint.
        "imported_from": import_claim(chain),
        "amendments": amendment_claims(chain),
        # Custody evidence about a paper original; it does not make the scan a transferable record.
        "paper_in_attestations": paper_in_claims(chain),
        "signatures": [{"document_id": d.id, "result": d.signatures} for d in docs],
        "conditions": verdict.as_json(),
        "ledger": {
            "chain_head": None
            if head is None
            else {
                "seq": len(events) - 1,
                "leaf_index": events[-1]["leaf_index"],
                "entry_hash": hashlib.sha256(head).hexdigest(),
            },
            "checkpoint": {
                "size": checkpoint.size,
                "note": checkpoint.note,
                "timestamp_token": bundle["timestamp_token"],
            },
            "bundle": bundle,
        },
    }


def issue_certificate(
    sources: Sources, key: VaultKey, checkpoints: SignsOnDemand, policy: Policy, actor: Actor, envelope_id: str
) -> dict[str, Any]:
    """Check the six conditions on a checkpoint covering every event, then sign what was found."""
    with sources.db.read_session() as session:
        envelope = session.get(Envelope, envelope_id)
        if envelope is None or not envelope.held_by(actor.org_id):
            raise NotFound("Envelope.NotFound", "no such envelope", envelope_id=envelope_id)
    sources.deadline.check()
    checkpoint = checkpoint_for_envelope(sources.db, checkpoints, actor.org_id, envelope_id)
    verdict = check_compliance(sources, policy, actor, envelope_id)
    body = certificate_body(sources, key, policy, envelope_id, checkpoint, verdict)
    sources.deadline.check()
    return sign_certificate(body, key)
