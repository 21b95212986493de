"""Every event the ledger may hold, declared once: its name, who may cause it, what the conditions make of it, its data.

Appending reads this catalogue (``compliance/ledger/events.py`` refuses an undeclared type or data that does
not fit its schema); the §9-105 conditions, the certificate, the audit trail and the verifier read it instead of
keeping their own lists of event names; ``docs/events.md`` is :func:`markdown_table` exactly (a test checks).
Print the table with ``python -m compliance.ledger.event_catalogue``.

A schema is closed: the data is a JSON object with every required key, optional keys only from its list, and
each value of one of its key's JSON types (``string``, ``integer``, ``boolean``, ``object``, ``array``, ``null``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Role(enum.Enum):
    """What a §9-105 condition makes of an event beyond condition 4 (its authority) and 6 (its chain link)."""

    VAULT_IN = "1: names the authoritative copy's documents; 2: sets the first assignee of record"
    ASSIGNEE_CHANGE = "2: changes the assignee of record"
    COPY = "5: registers a non-authoritative copy"
    RELEASE = "certificate: the vault-out it states"
    CHECK_RECORD = "the record of a failed check: written once per distinct set of failures"
    CONTROL_CHANGE = "4: moves control and/or custody to the transfer's receiver (its initiate and accept must agree)"


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def _is(value: Any, kinds: tuple[str, ...]) -> bool:
    if isinstance(value, bool) and "boolean" not in kinds:
        return False  # a bool is an int to Python, never to JSON
    return any(isinstance(value, _JSON_TYPES[kind]) for kind in kinds)


def _is_commitment(item: Any) -> bool:
    """``{"subject": "sub_...", "commitment": "<hex>"}`` and nothing else (compliance/ledger/personal_data.py)."""
    return (
        isinstance(item, dict)
        and item.keys() == {"subject", "commitment"}
        and all(isinstance(v, str) for v in item.values())
    )


@dataclass(frozen=True, eq=False)
class EventType:
    """One declared event. ``scope`` None: caused without a key, by the organisation itself or a named component.

    Compared by identity: only the catalogue's own declaration is that event.
    """

    name: str
    meaning: str
    scope: str | None
    envelope: bool  # a link of an envelope's chain (else an organisation-level entry of the log)
    required: Mapping[str, tuple[str, ...]]
    optional: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    role: Role | None = None
    commitments: tuple[str, ...] = ()  # keys holding lists of personal-data commitments ({subject, commitment})

    def __post_init__(self) -> None:
        kinds = {k for types in (*self.required.values(), *self.optional.values()) for k in types}
        if not kinds <= _JSON_TYPES.keys() or self.required.keys() & self.optional.keys():
            raise ValueError(f"{self.name}: a key's types must be JSON types, and a key required or optional")
        if not set(self.commitments) <= {k for k, types in self.required.items() if types == ("array",)}:
            raise ValueError(f"{self.name}: commitments live under required array keys")

    def schema_errors(self, data: Any) -> list[str]:
        """What is wrong with ``data`` for this event; empty when it fits."""
        if not isinstance(data, dict):
            return ["data is not an object"]
        errors = [f"missing {key}" for key in self.required if key not in data]
        for key, value in data.items():
            kinds = self.required.get(key) or self.optional.get(key)
            if kinds is None:
                errors.append(f"undeclared key {key}")
            elif not _is(value, kinds):
                errors.append(f"{key} is not {' or '.join(kinds)}")
            elif key in self.commitments and not all(_is_commitment(item) for item in value):
                errors.append(f"{key} holds something other than commitments: personal data stays out of the log")
        return errors

    def condition_semantics(self) -> str:
        """What conditions 1-6 make of this event, in words (the docs table's column)."""
        who = f"key with {self.scope}" if self.scope else "no key (the organisation or a component)"
        parts = [f"4: {who}"] if self.envelope else ["not in an envelope chain"]
        if self.role is not None:
            parts.append(self.role.value)
        if self.envelope:
            parts.append("6: a chain link, covered by a signed checkpoint")
        return "; ".join(parts)


S, N, OBJ, A = ("string",), ("string", "null"), ("object",), ("array",)

ORG_CREATED = EventType("org.created", "an organisation was created", None, False, {"name": S})
KEY_CREATED = EventType(
    "key.created",
    "an API key was issued (its hash is stored, never the key)",
    None,
    False,
    {"key_id": S, "prefix": S, "name": S, "scopes": A, "expires_at": N},
)
KEY_REVOKED = EventType("key.revoked", "an API key was revoked", None, False, {"key_id": S, "prefix": S})
KEY_ROTATED = EventType(
    "key.rotated",
    "an API key got a successor; the old one lapses after its grace",
    None,
    False,
    {"key_id": S, "prefix": S, "name": S, "scopes": A, "expires_at": N, "rotated_from": OBJ},
)
ENVELOPE_CREATED = EventType(
    "envelope.created",
    "an envelope (e-sign or paper) was created",
    "envelopes:write",
    True,
    {"kind": S, "title": S, "external_id": N, "parties": A, "secured_party": ("object", "null")},
    {"expires_at": S, "min": S},
    commitments=("parties",),
)
DOCUMENT_STAGED = EventType(
    "envelope.document_staged",
    "pre-signed PDFs were staged for a paper envelope, to be vaulted by an empty vault-in-upload",
    "envelopes:write",
    True,
    {"documents": A, "expires_at": S},
)
ENVELOPE_VOIDED = EventType(
    "envelope.voided", "an envelope that was not vaulted was cancelled", "envelopes:write", True, {"reason": S}
)
ENVELOPE_EXPIRED = EventType(
    "envelope.expired", "an envelope passed its expires_at before vault-in", None, True, {"expires_at": N}
)
VAULTED_IN = EventType(
    "vault.vaulted_in",
    "the authoritative copy was written under a COMPLIANCE lock",
    "vault:write",
    True,
    {
        "authoritative_copy_id": S,
        "source": S,
        "secured_party": OBJ,
        "retain_until": S,
        "caller_metadata": OBJ,
        "documents": A,
    },
    {"reconciled": ("boolean",)},
    Role.VAULT_IN,
)
CLAIM_RELEASED = EventType(
    "vault.claim_released",
    "the reconciler released a vault-in claim that never got its record; changes nothing of record",
    None,
    True,
    {"claim_id": S, "unrecorded_keys": A},
)
RETRIEVAL_ISSUED = EventType(
    "vault.retrieval_issued",
    "short-lived URLs to the authoritative copy were handed out",
    "vault:read",
    True,
    {"documents": A, "expires_at": S},
)
COPY_ISSUED = EventType(
    "vault.copy_issued",
    "a marked non-authoritative copy was made, its mark checked, and registered",
    "vault:read",
    True,
    {
        "copy_id": S,
        "document_id": S,
        "sha256": S,
        "source_sha256": S,
        "authoritative_copy_id": S,
        "mark_verified_at": N,
    },
    {"certified": ("boolean",)},  # a certified copy: the marked document with the custodian's signed affidavit
    role=Role.COPY,
)
RELEASED = EventType(
    "vault.released",
    "vault-out: the authoritative copy was released for good (transfer, paper-out, payoff, other)",
    "vault:release",
    True,
    {"authoritative_copy_id": S, "reason": S},
    {"transferee": OBJ, "note": S},
    Role.RELEASE,
)
ASSIGNEE_CHANGED = EventType(
    "vault.assignee_changed",
    "the assignee of record changed (declared for transfers of control; no route appends it yet)",
    "vault:release",
    True,
    {"secured_party": OBJ},
    role=Role.ASSIGNEE_CHANGE,
)
CHECK_FAILED = EventType(
    "compliance.check_failed",
    "a §9-105 check failed; these conditions, for these reasons",
    "compliance:read",
    True,
    {"verdict": S, "failed": A},
    role=Role.CHECK_RECORD,
)
SUBJECT_ERASED = EventType(
    "subject.erased",
    "the operator erased a data subject: its values and commitment key are gone, the commitment stays",
    None,
    True,
    {"subject": S},
)
MAP_ROOT = EventType(
    "map.root",
    "the head map's root at this log size, committed by the checkpoint that ends with it",
    None,
    False,
    {"map_root": S, "log_size_mapped": ("integer",), "version": ("integer",)},
)
INTEGRITY_FAILED = EventType(
    "integrity.failed",
    "evault verify found a new integrity finding",
    None,
    False,
    {"code": S, "subject": OBJ, "message": S, "run_id": S},
)

SIGNING_KEY_ROTATED = EventType(
    "vault.signing_key_rotated",
    "the vault signs with its next key from now on; the statement is signed by the outgoing and the incoming key",
    None,
    False,
    {"generation": ("integer",), "vkey": S, "public_key": S, "statement": S},
)
SIGNING_KEY_REVOKED = EventType(
    "vault.signing_key_revoked",
    "a vault key is compromised: what it signed after compromised_since is suspect unless dated before",
    None,
    False,
    {"generation": ("integer",), "vkey": S, "compromised_since": S, "statement": S},
)

RETENTION_EXTENDED = EventType(
    "vault.retention_extended",
    "the authoritative copy's COMPLIANCE retention was lengthened on every object version and the record",
    "retention:write",
    True,
    {"authoritative_copy_id": S, "retain_until": S, "previous_retain_until": S},
)
LEGAL_HOLD_SET = EventType(
    "vault.legal_hold_set",
    "S3 Object Lock legal hold was set on every object version of the authoritative copy",
    "retention:write",
    True,
    {"authoritative_copy_id": S, "reason": S},
)
LEGAL_HOLD_CLEARED = EventType(
    "vault.legal_hold_cleared",
    "the legal hold was cleared from every object version of the authoritative copy",
    "retention:write",
    True,
    {"authoritative_copy_id": S, "reason": S},
)
DISPOSED = EventType(
    "vault.disposed",
    "evault dispose deleted the object versions of an authoritative copy whose retention had passed; the log "
    "keeps their hashes",
    None,
    True,
    {"authoritative_copy_id": S, "retain_until": S, "documents": A},
)
ORG_MERS_ORG_ID_SET = EventType(
    "org.mers_org_id_set",
    "the operator set (or, null, removed) the organisation's MERS Org ID, the prefix of the MINs it registers",
    None,
    False,
    {"mers_org_id": N},
)
ORG_RETENTION_DEFAULT_SET = EventType(
    "org.retention_default_set",
    "the operator set (or, null, removed) the organisation's default retention in days for its vault-ins",
    None,
    False,
    {"retention_days": ("integer", "null"), "previous_retention_days": ("integer", "null")},
)
AMENDED = EventType(
    "vault.amended",
    "a modification or assumption was recorded beside the authoritative copy (its PDFs vaulted write-once); the "
    "authoritative bytes are unchanged",
    "vault:write",
    True,
    {"amendment_id": S, "type": S, "data": OBJ, "documents": A},
    {"reconciled": ("boolean",)},
)
PAPER_IN_ATTESTED = EventType(
    "vault.paper_in_attested",
    "the custodian attested what became of a paper envelope's wet-ink original (held or destroyed, when, by whom)",
    "vault:write",
    True,
    {"attestation_id": S, "original": S, "at": S, "attested_by": A},
    {"location": S},
    commitments=("attested_by",),
)

ENVELOPE_IMPORTED = EventType(
    "envelope.imported",
    "an authoritative copy released to this vault by another vault's vault-out was imported after every seal, "
    "proof, checkpoint and receipt of its export package verified; it opens the envelope's chain here",
    None,
    True,
    {
        "kind": S,
        "title": S,
        "external_id": N,
        "parties": A,
        "secured_party": OBJ,
        "authoritative_copy_id": S,
        "source": S,
        "retain_until": S,
        "documents": A,
        "origin": OBJ,
    },
    role=Role.VAULT_IN,
)

ORG_SIGNING_KEY_ADDED = EventType(
    "org.signing_key_added",
    "the operator registered an Ed25519 public key of the organisation's own, with which it countersigns receipts",
    None,
    False,
    {"key_id": S, "public_key": S},
)

# Transfers between organisations (docs/transfers.md): each names its transfer; the receiver acts with its own key.
_TRANSFER = {"transfer_id": S, "from_org": S, "to_org": S, "type": S}
TRANSFER_INITIATED = EventType(
    "transfer.initiated",
    "the organisation in control offered control and/or custody to another organisation; escrow begins",
    "vault:release",
    True,
    {**_TRANSFER, "confirm_required": ("boolean",), "expires_at": N},
    {"note": S},
)
TRANSFER_ACCEPTED = EventType(
    "transfer.accepted", "the receiving organisation accepted the transfer", "vault:release", True, _TRANSFER
)
TRANSFER_REJECTED = EventType(
    "transfer.rejected",
    "the receiving organisation refused the transfer; control stays",
    "vault:release",
    True,
    {**_TRANSFER, "reason": N},
)
TRANSFER_CANCELLED = EventType(
    "transfer.cancelled", "the initiator withdrew the transfer; control stays", "vault:release", True, _TRANSFER
)
TRANSFER_EXPIRED = EventType(
    "transfer.expired", "the transfer passed its expires_at while open; control stays", None, True, _TRANSFER
)
TRANSFER_COMPLETED = EventType(
    "transfer.completed",
    "control and/or custody moved: at acceptance, or at the initiator's confirmation when one was required",
    "vault:release",
    True,
    {**_TRANSFER, "controller": S, "custodian": S},
    {"next_log": S},  # a hand-off: the chain's last entry in this log; it continues in next_log's
    role=Role.CONTROL_CHANGE,
)
TRANSFER_ARRIVED = EventType(
    "transfer.arrived",
    "the hand-off of control, in the receiver's log: the envelope's chain continues here from the entry it names "
    "(the transfer.completed that closed the chain in the transferor's log)",
    None,
    True,
    {**_TRANSFER, "log": S, "leaf_index": ("integer",), "entry_hash": S},
)
TRANSFER_RECORDED = EventType(
    "transfer.recorded",
    "the hand-off of a completed transfer, in the log of a party whose log does not hold the envelope's chain",
    None,
    False,
    {**_TRANSFER, "envelope_id": S, "log": S, "leaf_index": ("integer",), "entry_hash": S},
)
TRANSFER_COUNTERSIGNED = EventType(
    "transfer.countersigned",
    "a party countersigned the completed transfer's receipt statement with its registered key (in its own log)",
    "vault:release",
    False,
    {"transfer_id": S, "envelope_id": S, "key_id": S, "statement_sha256": S, "signature": S},
)

# The e-sign ceremony (vault/ceremony/). A recipient's name and email (``signer``) and what their client showed at
# each step (``evidence``: network address, user agent, adopted name) reach the log only as commitments.
_PERSON = {"recipient_id": S, "signer": A, "evidence": A}
ENVELOPE_SENT = EventType(
    "envelope.sent",
    "an e-sign envelope was sent for signing: its document and its roster are fixed from now on",
    "envelopes:write",
    True,
    {"document": OBJ, "recipients": A, "signers": A},
    {"subjects": A},  # each recipient's data-subject id, in the roster's order (what a rebuild pairs them by)
    commitments=("signers",),
)
RECIPIENT_VIEWED = EventType(
    "recipient.viewed", "a recipient opened their signing link", None, True, _PERSON, commitments=("signer", "evidence")
)
RECIPIENT_CONSENTED = EventType(
    "recipient.consented",
    "a recipient consented to electronic records and signatures (E-SIGN 101(c)) after the disclosures",
    None,
    True,
    {**_PERSON, "disclosure_sha256": S},
    commitments=("signer", "evidence"),
)
RECIPIENT_SIGNED = EventType(
    "recipient.signed",
    "a signer adopted a signature and signed, in their turn",
    None,
    True,
    {**_PERSON, "order": ("integer",), "signature_type": S, "document_sha256": S},
    commitments=("signer", "evidence"),
)
RECIPIENT_DECLINED = EventType(
    "recipient.declined",
    "a signer declined to sign: the envelope is declined, for good, and never vaulted",
    None,
    True,
    _PERSON,
    commitments=("signer", "evidence"),
)
ENVELOPE_REMINDED = EventType(
    "envelope.reminded",
    "the signers whose turn it is were sent their link again",
    "envelopes:write",
    True,
    {"recipients": A},
)
ENVELOPE_COMPLETED = EventType(
    "envelope.completed",
    "the last signer signed: the document is sealed and vaulted in by itself (vault.vaulted_in follows)",
    None,
    True,
    {"recipients": A, "document_sha256": S},
)

CATALOGUE: Mapping[str, EventType] = {
    e.name: e
    for e in (
        ORG_CREATED,
        KEY_CREATED,
        KEY_REVOKED,
        KEY_ROTATED,
        ENVELOPE_CREATED,
        DOCUMENT_STAGED,
        ENVELOPE_VOIDED,
        ENVELOPE_EXPIRED,
        VAULTED_IN,
        CLAIM_RELEASED,
        RETRIEVAL_ISSUED,
        COPY_ISSUED,
        RELEASED,
        ASSIGNEE_CHANGED,
        CHECK_FAILED,
        SUBJECT_ERASED,
        MAP_ROOT,
        INTEGRITY_FAILED,
        SIGNING_KEY_ROTATED,
        SIGNING_KEY_REVOKED,
        RETENTION_EXTENDED,
        LEGAL_HOLD_SET,
        LEGAL_HOLD_CLEARED,
        DISPOSED,
        ORG_MERS_ORG_ID_SET,
        ORG_RETENTION_DEFAULT_SET,
        AMENDED,
        PAPER_IN_ATTESTED,
        ENVELOPE_IMPORTED,
        TRANSFER_INITIATED,
        TRANSFER_ACCEPTED,
        TRANSFER_REJECTED,
        TRANSFER_CANCELLED,
        TRANSFER_EXPIRED,
        TRANSFER_COMPLETED,
        TRANSFER_ARRIVED,
        TRANSFER_RECORDED,
        ORG_SIGNING_KEY_ADDED,
        TRANSFER_COUNTERSIGNED,
        ENVELOPE_SENT,
        RECIPIENT_VIEWED,
        RECIPIENT_CONSENTED,
        RECIPIENT_SIGNED,
        RECIPIENT_DECLINED,
        ENVELOPE_REMINDED,
        ENVELOPE_COMPLETED,
    )
}


def declared(name: object) -> EventType | None:
    """The declaration of an event named in an entry, or None for a name the catalogue does not know."""
    return CATALOGUE.get(name) if isinstance(name, str) else None


def with_role(*roles: Role) -> frozenset[str]:
    """The names of the events that play one of ``roles`` for the conditions."""
    return frozenset(e.name for e in CATALOGUE.values() if e.role in roles)


def _keys(spec: Mapping[str, tuple[str, ...]], commitments: tuple[str, ...] = ()) -> str:
    def one(key: str, kinds: tuple[str, ...]) -> str:
        what = "array of personal-data commitments" if key in commitments else " or ".join(kinds)
        return f"`{key}` ({what})"

    return ", ".join(one(key, kinds) for key, kinds in spec.items()) or "—"


def markdown_table() -> str:
    rows = [
        "| Event | Meaning | Scope | Conditions | Required data | Optional data |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for e in CATALOGUE.values():
        scope = f"`{e.scope}`" if e.scope else "— (keyless)"
        rows.append(
            f"| `{e.name}` | {e.meaning} | {scope} | {e.condition_semantics()} | {_keys(e.required, e.commitments)} "
            f"| {_keys(e.optional)} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
