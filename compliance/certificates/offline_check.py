"""Checking an ``evault-certificate/v1`` offline, with nothing but the vault's public key (and, optionally,
witness keys and TSA roots).

In order: the Ed25519 signature over the RFC 8785 encoding of ``certificate``, with the key the auditor brings;
the embedded v2 bundle (``compliance.bundles.proof_bundle.verify_bundle``: checkpoint, inclusions, chain, head map,
completeness); the checkpoint policy (witnesses, timestamp); then the certificate's own claims against the
proven history: the same checkpoint and head, the document hashes and versions of the ``vault.vaulted_in``
entry, the assignee of record, the copies and the vault-out, and a verdict that follows from the conditions.
Every failure raises :class:`CertificateInvalid` (or a ``LogError``/``Timestamp.Invalid`` from the proofs).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature

from compliance import strict_json
from compliance.bundles.proof_bundle import VerifiedBundle, key_history_for, verify_bundle
from compliance.certificates.issuance import FORMAT, key_id_of
from compliance.checkpoints.policy import CheckpointTrust
from compliance.conditions.evidence import as_dict
from compliance.conditions.policies import overall
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
from compliance.errors import InvalidInput
from compliance.ledger.event_catalogue import Role, with_role
from compliance.ledger.key_history import KeyHistory, KeySet
from compliance.ledger.log_error import LogError
from storage.ids import iso

MALFORMED, BAD_SIGNATURE, INCONSISTENT = "Certificate.Malformed", "Certificate.BadSignature", "Certificate.Inconsistent"
KEY_COMPROMISED = "Certificate.KeyCompromised"


class CertificateInvalid(InvalidInput):
    """The certificate is not what the vault signed, or contradicts its own proofs."""


@dataclass(frozen=True)
class VerifiedCertificate:
    certificate: dict[str, Any]
    bundle: VerifiedBundle
    trust: list[str]  # what the witness and TSA policy proved

    @property
    def verdict(self) -> str:
        return str(self.certificate["conditions"]["verdict"])


def _get(obj: Any, name: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(obj, dict) or not isinstance(obj.get(name), kind):
        raise CertificateInvalid(MALFORMED, f"certificate field {name!r} is missing or malformed")
    return obj[name]


def _check_signature(document: Any, keys: KeyHistory) -> dict[str, Any]:
    body: dict[str, Any] = _get(document, "certificate", dict)
    signature = _get(document, "signature", dict)
    by_id = {key_id_of(p.public_key): p for p in keys.periods}
    period = by_id.get(_get(signature, "key_id", str))
    if _get(signature, "alg", str) != "Ed25519" or period is None:
        raise CertificateInvalid(
            BAD_SIGNATURE, "the certificate is not signed by the key you trust (or its successors)"
        )
    key = period.public_key
    try:
        key.verify(base64.b64decode(_get(signature, "value", str), validate=True), rfc8785.dumps(body))
    except (InvalidSignature, binascii.Error, ValueError, rfc8785.CanonicalizationError):
        raise CertificateInvalid(BAD_SIGNATURE, "the certificate's signature does not verify") from None
    if _get(body, "format", str) != FORMAT:
        raise CertificateInvalid(MALFORMED, f"certificate format must be {FORMAT}")
    if period.compromised_since is not None:
        # Nothing independent dates a certificate (its issued_at is the signer's own word): re-issue it.
        raise CertificateInvalid(
            KEY_COMPROMISED,
            f"the certificate is signed by a key compromised since {iso(period.compromised_since)}",
            generation=period.generation,
        )
    return body


def _inconsistent(message: str, **details: Any) -> CertificateInvalid:
    return CertificateInvalid(INCONSISTENT, message, **details)


def _check_head(body: dict[str, Any], bundle: dict[str, Any], proven: VerifiedBundle) -> None:
    envelope = _get(body, "envelope", dict)
    ledger = _get(body, "ledger", dict)
    if _get(envelope, "id", str) != proven.envelope_id:
        raise _inconsistent("the certificate and its bundle are about different envelopes")
    if _get(_get(ledger, "checkpoint", dict), "note", str) != bundle["checkpoint"]:
        raise _inconsistent("the certificate names another checkpoint than its bundle proves")
    events = proven.events
    head = ledger.get("chain_head")
    if events:
        entry = base64.b64decode(bundle["events"][-1]["entry"])
        expected = {"seq": len(events) - 1, "leaf_index": bundle["events"][-1]["leaf_index"]}
        expected["entry_hash"] = hashlib.sha256(entry).hexdigest()
        if head != expected:
            raise _inconsistent("the chain head is not the last event the bundle proves")
    elif head is not None:
        raise _inconsistent("the certificate names a chain head the bundle does not have")


def _same(claimed: Any, proven: Any, what: str) -> None:
    """A claim equals what the proofs show, by count and content; else the certificate contradicts itself."""
    if claimed != proven:
        raise _inconsistent(f"the certificate's {what} differ from what the ledger records", claim=what)


def _by_id(items: Any) -> list[Any]:
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise CertificateInvalid(MALFORMED, "a list of the certificate is not a list of objects")
    return sorted(items, key=lambda item: str(item.get("id", item.get("document_id"))))


def _check_envelope(body: dict[str, Any], chain: Projection) -> None:
    envelope, created = _get(body, "envelope", dict), chain.created or {}
    shown = {name: envelope.get(name) for name in ("kind", "title", "external_id", "vault_state", "min")}
    _same(
        shown,
        {**{k: created.get(k) for k in ("kind", "title", "external_id", "min")}, "vault_state": chain.vault_state},
        "envelope fields",
    )


def _check_record(body: dict[str, Any], chain: Projection) -> None:
    copy, vaulted = body.get("authoritative_copy"), chain.vaulted
    if (vaulted is None) != (copy is None):
        raise _inconsistent("the certificate's authoritative copy and the ledger's vault-in disagree")
    if vaulted is None or not isinstance(copy, dict):
        _same(_get(body, "signatures", list), [], "signature results")
        return
    data = vaulted["data"]
    record = {k: copy.get(k) for k in ("id", "source", "retain_until", "legal_hold", "vaulted_at")}
    _same(
        record,
        {
            "id": data.get("authoritative_copy_id"),
            "source": data.get("source"),
            "retain_until": chain.retain_until,
            "legal_hold": hold_claim(chain),
            "vaulted_at": vaulted["time"],
        },
        "authoritative copy",
    )
    ledger_docs = data.get("documents") if isinstance(data.get("documents"), list) else []
    fields = ("id", "filename", "sha256", "size", "bucket", "key", "version_id")
    _same(
        [{f: d.get(f) for f in fields} for d in _by_id(_get(copy, "documents", list))],
        [{f: d.get(f) for f in fields} for d in _by_id(ledger_docs)],
        "documents",
    )
    _same(
        _by_id(_get(body, "signatures", list)),
        _by_id([{"document_id": d.get("id"), "result": d.get("signatures")} for d in ledger_docs]),
        "signature results",
    )


def _check_history(body: dict[str, Any], events: list[dict[str, Any]]) -> None:
    history = [
        {
            "seq": e.get("seq"),
            "type": e.get("type"),
            "time": e.get("time"),
            "secured_party": as_dict(e.get("data")).get("secured_party"),
        }
        for e in events
        if e.get("type") in with_role(Role.VAULT_IN, Role.ASSIGNEE_CHANGE)
    ]
    _same(_get(body, "assignee_history", list), history, "assignee history")
    _same(body.get("assignee_of_record"), history[-1]["secured_party"] if history else None, "assignee of record")


def _check_copies_and_release(body: dict[str, Any], chain: Projection) -> None:
    copies = [
        {
            "id": copy_id,
            "document_id": e["data"].get("document_id"),
            "sha256": e["data"].get("sha256"),
            "issued_at": e["time"],
        }
        for copy_id, e in chain.copies.items()
    ]
    _same(_by_id(_get(body, "copies", list)), _by_id(copies), "copies")
    _same(body.get("vault_out"), release_claim(chain), "vault-out")
    # Absent (a certificate from before amendments existed) is the same claim as none.
    _same(body.get("amendments", []), amendment_claims(chain), "amendments")
    _same(body.get("paper_in_attestations", []), paper_in_claims(chain), "paper-in attestations")
    _same(body.get("imported_from"), import_claim(chain), "provenance of an import")


def _check_control(body: dict[str, Any], chain: Projection, events: list[dict[str, Any]]) -> None:
    """The controller, custodian and transfers as the proven chain's transfer entries leave them; the home
    organisation is the log the chain starts in (a v3 bundle proves each hand-off into another log)."""
    home = _get(_get(body, "envelope", dict), "org_id", str)
    if events and events[0].get("log") != home:
        raise _inconsistent("the certificate's organisation is not the log its events start in")
    _same(body.get("control"), control_claim(chain, home), "controller and custodian")
    _same(body.get("transfers"), transfers_claim(chain), "transfers")


def _check_claims(body: dict[str, Any], bundle: dict[str, Any], proven: VerifiedBundle) -> None:
    _check_head(body, bundle, proven)
    chain = fold(proven.envelope_id, proven.events)
    _check_envelope(body, chain)
    _check_record(body, chain)
    _check_history(body, proven.events)
    _check_copies_and_release(body, chain)
    _check_control(body, chain, proven.events)
    conditions = _get(body, "conditions", dict)
    results = _get(conditions, "conditions", list)
    if sorted(str(r.get("condition")) for r in results) != ["1", "2", "3", "4", "5", "6"]:
        raise _inconsistent("the certificate does not answer each of the six conditions once")
    maintained = next(r for r in results if str(r.get("condition")) == "3")
    if chain.released is not None and maintained.get("status") == "pass":
        raise _inconsistent("a released record cannot pass: no one maintains it as authoritative any more")
    if conditions.get("verdict") != overall([str(r.get("status")) for r in results]):
        raise _inconsistent("the overall verdict does not follow from the conditions' results")


def verify_certificate(
    text: str | bytes, trusted_pem: bytes, trust: CheckpointTrust | None = None, keys: KeySet | None = None
) -> VerifiedCertificate:
    """Check from the auditor's key; ``keys`` (the vault's key set) adds rotations and revocations."""
    try:
        document = strict_json.loads(text)
    except ValueError as exc:
        raise CertificateInvalid(MALFORMED, "certificate is not JSON", error=str(exc)) from None
    bundle = _get(_get(_get(document, "certificate", dict), "ledger", dict), "bundle", dict)
    try:
        history = key_history_for(bundle, trusted_pem, keys)
    except LogError as exc:
        raise CertificateInvalid(
            BAD_SIGNATURE, f"the certificate's keys do not follow from yours: {exc.message}"
        ) from None
    body = _check_signature(document, history)
    proven = verify_bundle(json.dumps(bundle), trusted_pem, keys=keys, trust=trust)
    if proven.completeness is None:
        raise _inconsistent("the embedded bundle is not v2: completeness is not proven")
    token = bundle.get("timestamp_token")
    try:
        raw_token = base64.b64decode(token, validate=True) if isinstance(token, str) else None
    except (binascii.Error, ValueError):
        raise CertificateInvalid(MALFORMED, "timestamp token is not base64") from None
    proved = (trust or CheckpointTrust()).check(bundle["checkpoint"], raw_token)
    _check_claims(body, bundle, proven)
    return VerifiedCertificate(body, proven, proved)
