"""Checking an ``evault-receipt/v1`` offline, with nothing but the vault's public key (no database, no network).

In order: the Ed25519 signature over the RFC 8785 encoding of ``receipt`` by the trusted key or a key that
follows from it by the rotations the receipt carries (and ``keys`` adds); each checkpoint's signature by a key of
that chain and its origin, and the witness and timestamp policy the auditor asks for; each attested event's
inclusion in its log's checkpoint, at the position and in the log and envelope it names; then that every bound
field equals the value its pointer finds in the entry, and that the kind's required events and bindings are all
there. Every failure raises :class:`ReceiptInvalid` (or a ``LogError`` from the proofs): any altered field fails.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature

from compliance import strict_json
from compliance.certificates.issuance import key_id_of
from compliance.checkpoints.auditor_memory import load_trusted_key
from compliance.checkpoints.policy import CheckpointTrust
from compliance.errors import InvalidInput
from compliance.ledger.chain import parse_entry
from compliance.ledger.checkpoint_format import Checkpoint, verify_checkpoint
from compliance.ledger.key_history import KeyHistory, KeySet
from compliance.ledger.log_error import LogError
from compliance.ledger.merkle import leaf_hash, verify_inclusion
from compliance.ledger.note import b64decode_strict
from compliance.receipts.countersign import check_countersignatures
from compliance.receipts.document import FORMAT
from compliance.receipts.kinds import KINDS
from compliance.receipts.pointer import PointerError, resolve
from storage.ids import iso

MALFORMED, BAD_SIGNATURE, INCONSISTENT = "Receipt.Malformed", "Receipt.BadSignature", "Receipt.Inconsistent"
KEY_COMPROMISED = "Receipt.KeyCompromised"


class ReceiptInvalid(InvalidInput):
    """The receipt is not what the vault signed, or contradicts its own proofs."""


@dataclass(frozen=True)
class VerifiedReceipt:
    receipt: dict[str, Any]
    events: dict[str, dict[str, Any]]  # role -> the parsed, proven log entry
    checkpoints: dict[str, Checkpoint]  # origin -> the verified checkpoint
    trust: list[str]  # what the witness and TSA policy proved
    countersigned_by: tuple[str, ...] = ()  # the parties whose countersignature over the statement verified

    @property
    def kind(self) -> str:
        return str(self.receipt["kind"])

    @property
    def fields(self) -> dict[str, Any]:
        return dict(self.receipt["fields"])


def _get(obj: Any, name: str, kind: type | tuple[type, ...]) -> Any:
    value = obj.get(name) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ReceiptInvalid(MALFORMED, f"receipt field {name!r} is missing or malformed")
    return value


def _list_of_dicts(obj: dict[str, Any], name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = _get(obj, name, list)
    if not all(isinstance(i, dict) for i in items):
        raise ReceiptInvalid(MALFORMED, f"receipt field {name!r} must be a list of objects")
    return items


def _history(body: dict[str, Any], trusted_pem: bytes, keys: KeySet | None) -> KeyHistory:
    chain = body.get("key_chain", [])
    if not isinstance(chain, list) or not all(isinstance(note, str) for note in chain):
        raise ReceiptInvalid(MALFORMED, "receipt field 'key_chain' must be a list of rotation statements")
    try:
        return (keys or KeySet()).history(load_trusted_key(trusted_pem), chain)
    except LogError as exc:
        raise ReceiptInvalid(BAD_SIGNATURE, f"the receipt's keys do not follow from yours: {exc.message}") from None


def _check_signature(document: Any, trusted_pem: bytes, keys: KeySet | None) -> tuple[dict[str, Any], KeyHistory]:
    body: dict[str, Any] = _get(document, "receipt", dict)
    signature = _get(document, "signature", dict)
    if set(document) != {"receipt", "signature"}:
        raise ReceiptInvalid(MALFORMED, "a receipt holds exactly 'receipt' and 'signature'")
    history = _history(body, trusted_pem, keys)
    period = {key_id_of(p.public_key): p for p in history.periods}.get(_get(signature, "key_id", str))
    if _get(signature, "alg", str) != "Ed25519" or period is None:
        raise ReceiptInvalid(BAD_SIGNATURE, "the receipt is not signed by the key you trust (or its successors)")
    try:
        raw = base64.b64decode(_get(signature, "value", str), validate=True)
        period.public_key.verify(raw, rfc8785.dumps(body))
    except (InvalidSignature, binascii.Error, ValueError, rfc8785.CanonicalizationError):
        raise ReceiptInvalid(BAD_SIGNATURE, "the receipt's signature does not verify") from None
    if period.compromised_since is not None:
        # Nothing independent dates a receipt (its issued_at is the signer's own word): ask for a new one.
        raise ReceiptInvalid(
            KEY_COMPROMISED,
            f"the receipt is signed by a key compromised since {iso(period.compromised_since)}",
            generation=period.generation,
        )
    if _get(body, "format", str) != FORMAT:
        raise ReceiptInvalid(MALFORMED, f"receipt format must be {FORMAT}")
    if _get(_get(body, "issuer", dict), "key_id", str) != signature["key_id"]:
        raise ReceiptInvalid(INCONSISTENT, "the receipt names another issuer key than the one that signed it")
    return body, history


def _token(item: dict[str, Any]) -> bytes | None:
    token = item.get("timestamp_token")
    if token is None:
        return None
    if not isinstance(token, str):
        raise ReceiptInvalid(MALFORMED, "a timestamp token must be base64 or null")
    return b64decode_strict(token, "timestamp token")


def _checkpoints(
    body: dict[str, Any], history: KeyHistory, trust: CheckpointTrust
) -> tuple[dict[str, Checkpoint], list[str]]:
    verified: dict[str, Checkpoint] = {}
    proven: list[str] = []
    for item in _list_of_dicts(body, "checkpoints"):
        origin, note = _get(item, "origin", str), _get(item, "note", str)
        if origin in verified:
            raise ReceiptInvalid(MALFORMED, "a receipt carries one checkpoint per log", origin=origin)
        verifier, period = history.verifier_for_note(note)
        verified[origin] = verify_checkpoint(note, verifier, origin)
        token = _token(item)
        trust.check_key(history, period, note, token)
        proven += trust.check(note, token)
    if not verified:
        raise ReceiptInvalid(MALFORMED, "a receipt rests on at least one checkpoint")
    return verified, proven


def _events(body: dict[str, Any], checkpoints: dict[str, Checkpoint]) -> dict[str, dict[str, Any]]:
    envelope_id = _get(body, "envelope_id", str)
    events: dict[str, dict[str, Any]] = {}
    for item in _list_of_dicts(body, "events"):
        role, origin, index = _get(item, "role", str), _get(item, "log", str), _get(item, "leaf_index", int)
        if role in events:
            raise ReceiptInvalid(MALFORMED, "two attested events share one role", role=role)
        checkpoint = checkpoints.get(origin)
        if checkpoint is None:
            raise ReceiptInvalid(MALFORMED, "an event names a log the receipt has no checkpoint of", role=role)
        entry = b64decode_strict(_get(item, "entry", str), "entry")
        hashes = _get(item, "inclusion_proof", list)
        if not all(isinstance(h, str) for h in hashes):
            raise ReceiptInvalid(MALFORMED, "proof hashes must be base64 strings")
        proof = [b64decode_strict(h, "proof hash") for h in hashes]
        verify_inclusion(leaf_hash(entry), index, checkpoint.size, proof, checkpoint.root_hash)
        value = parse_entry(entry)
        if value.get("index") != index or value.get("log") != origin.rsplit("/", 1)[-1]:
            raise ReceiptInvalid(
                INCONSISTENT, "an entry names another position or log than it was proven at", role=role
            )
        if value.get("envelope") != envelope_id:
            raise ReceiptInvalid(INCONSISTENT, "an attested event belongs to another envelope", role=role)
        events[role] = value
    return events


def _check_bindings(body: dict[str, Any], events: dict[str, dict[str, Any]]) -> set[str]:
    fields = _get(body, "fields", dict)
    bound: set[str] = set()
    for item in _list_of_dicts(body, "bindings"):
        field, role, pointer = _get(item, "field", str), _get(item, "event", str), _get(item, "pointer", str)
        if role not in events or field not in fields or field in bound:
            raise ReceiptInvalid(MALFORMED, "a binding names no attested event or field, or repeats one", field=field)
        try:
            found = resolve(events[role], pointer)
        except PointerError:
            raise ReceiptInvalid(MALFORMED, "a binding's pointer is not an RFC 6901 pointer", field=field) from None
        if fields[field] != found:
            raise ReceiptInvalid(
                INCONSISTENT, f"the receipt's {field!r} differs from what the log records", field=field
            )
        bound.add(field)
    return bound


def _check_kind(body: dict[str, Any], events: dict[str, dict[str, Any]], bound: set[str]) -> None:
    kind = KINDS.get(_get(body, "kind", str))
    if kind is None:
        raise ReceiptInvalid(MALFORMED, "the receipt is of a kind this verifier does not know", kind=body["kind"])
    if set(events) != kind.roles:
        raise ReceiptInvalid(
            INCONSISTENT, f"a {kind.name} receipt attests exactly the events {sorted(kind.roles)}", kind=kind.name
        )
    if not kind.bound <= bound:
        raise ReceiptInvalid(
            INCONSISTENT, f"a {kind.name} receipt binds {sorted(kind.bound - bound)} to the log", kind=kind.name
        )


def verify_receipt(
    text: str | bytes, trusted_pem: bytes, trust: CheckpointTrust | None = None, keys: KeySet | None = None
) -> VerifiedReceipt:
    """Check from the auditor's key; ``keys`` (the vault's key set) adds rotations and revocations."""
    try:
        document = strict_json.loads(text)
    except ValueError as exc:
        raise ReceiptInvalid(MALFORMED, "receipt is not JSON", error=str(exc)) from None
    body, history = _check_signature(document, trusted_pem, keys)
    checkpoints, proven = _checkpoints(body, history, trust or CheckpointTrust())
    events = _events(body, checkpoints)
    _check_kind(body, events, _check_bindings(body, events))
    fields = body["fields"]
    parties = {str(fields.get(name)) for name in ("organisation", "from_organisation", "to_organisation")}
    signed = check_countersignatures(body, parties - {"None"})
    return VerifiedReceipt(body, events, checkpoints, proven, tuple(signed))
