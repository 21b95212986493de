"""The shapes of the partner API's answers, as typed models for the OpenAPI document.

Services shape their answers as plain JSON (so an idempotent replay is the stored body, byte for byte); these
dataclasses are what that JSON is, and each handler names them in its ``responses``. ``tests/test_contract.py``
checks the live answers against the document. Caller-supplied free-form JSON (parties, metadata) stays an object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from litestar.openapi.datastructures import ResponseSpec

Kind = Literal["esign", "paper"]
EnvelopeState = Literal["draft", "sent", "awaiting_upload", "completed", "declined", "voided", "expired"]
VaultState = Literal["not_vaulted", "vaulted", "released"]
ReleaseReason = Literal["transfer", "paper_out", "payoff", "other"]
ConditionStatus = Literal["pass", "fail", "pending", "released"]
TransferType = Literal["control", "location", "control_and_location"]
TransferStatus = Literal["pending", "accepted", "completed", "rejected", "cancelled", "expired"]


@dataclass
class ErrorBody:
    """Every error, everywhere. ``code`` is stable (``Resource.ErrorType``); ``details`` depends on it."""

    code: str
    message: str
    details: dict[str, Any]
    request_id: str | None


@dataclass
class StagedDocumentView:
    id: str
    filename: str
    sha256: str
    size: int
    staged_at: str
    expires_at: str


@dataclass
class VaultedDocumentView:
    id: str
    filename: str
    sha256: str
    size: int
    pages: int
    version_id: str
    signatures: dict[str, Any] | None  # the graded validation of the PDF's own signatures (pyHanko)


@dataclass
class ReleaseView:
    at: str
    by: str | None
    reason: ReleaseReason | None
    details: dict[str, Any] | None


@dataclass
class LegalHoldView:
    reason: str
    since: str


@dataclass
class VaultView:
    """``state`` always; the rest once vaulted."""

    state: VaultState
    authoritative_copy_id: str | None = None
    source: str | None = None
    vaulted_at: str | None = None
    retain_until: str | None = None
    legal_hold: LegalHoldView | None = None  # S3 Object Lock legal hold on every object version, while set
    disposed_at: str | None = None  # its object versions were deleted after retention (evault dispose)
    documents: list[VaultedDocumentView] | None = None
    released: ReleaseView | None = None


@dataclass
class EnvelopeSummary:
    id: str
    kind: Kind
    status: EnvelopeState
    vault_state: VaultState
    title: str
    external_id: str | None
    revision: int
    created_at: str
    updated_at: str
    expires_at: str | None


RecipientRole = Literal["signer", "viewer"]
RecipientState = Literal["pending", "viewed", "consented", "signed", "declined"]


@dataclass
class FieldView:
    """A rectangle in PDF points from the page's bottom-left."""

    type: Literal["signature", "initials", "date", "text"]
    page: int
    x: float
    y: float
    width: float
    height: float


@dataclass
class RecipientView:
    id: str
    name: str | None  # None once the person was erased
    email: str | None
    role: RecipientRole
    order: int
    status: RecipientState
    fields: list[FieldView]
    signed_at: str | None
    declined_at: str | None


@dataclass
class CeremonyDocumentView:
    """The PDF an e-sign envelope's recipients sign (staged; the sealed result is the vaulted document)."""

    id: str
    filename: str | None
    sha256: str | None
    size: int | None
    pages: int


@dataclass
class AmendmentDocumentView:
    id: str
    filename: str
    sha256: str
    size: int
    pages: int
    version_id: str
    signatures: dict[str, Any] | None


@dataclass
class AmendmentView:
    """A modification or assumption recorded beside the authoritative copy (docs/parties.md)."""

    id: str
    position: int
    type: Literal["modification", "assumption"]
    data: dict[str, Any]
    documents: list[AmendmentDocumentView]
    recorded_at: str


@dataclass
class AmendmentList:
    envelope_id: str
    amendments: list[AmendmentView]


@dataclass
class AttesterView:
    """Who attested: their name while shown; ``state`` says ``erased`` once the person was erased."""

    subject: str
    state: Literal["shown", "erased", "mismatch"]
    name: str | None = None


@dataclass
class PaperInAttestationView:
    id: str
    original: Literal["held", "destroyed"]
    at: str
    location: str | None
    attested_by: AttesterView
    recorded_at: str


@dataclass
class EnvelopeView(EnvelopeSummary):
    min: str | None  # MERS MIN, when registered with the envelope
    parties: list[dict[str, Any]]
    secured_party: dict[str, Any] | None
    metadata: dict[str, Any]
    staged_documents: list[StagedDocumentView]
    vault: VaultView
    amendments: list[AmendmentView]
    paper_in_attestations: list[PaperInAttestationView]
    recipients: list[RecipientView] | None = None  # e-sign envelopes: the signing roster, in order
    document: CeremonyDocumentView | None = None  # e-sign envelopes: the document to sign, once uploaded


@dataclass
class RemindedView(EnvelopeView):
    reminded: list[str] | None = None  # the emails of the signers reminded now, and nobody else's


@dataclass
class SigningLinkView:
    recipient_id: str
    email: str | None
    role: RecipientRole
    order: int
    status: RecipientState
    url: str  # .../sign/<token>: the token is the only credential
    expires_at: str | None


@dataclass
class SigningLinks:
    links: list[SigningLinkView]


@dataclass
class SigningEnvelope:
    id: str
    title: str
    status: EnvelopeState


@dataclass
class SigningRecipient:
    id: str
    name: str | None
    email: str | None
    role: RecipientRole
    order: int
    status: RecipientState
    fields: list[FieldView]


@dataclass
class SigningDocument:
    filename: str | None
    sha256: str | None
    pages: list[list[float]] | None  # each page's [width, height] in points


@dataclass
class SigningConsent:
    given: bool
    at: str | None
    disclosure: str  # the E-SIGN 101(c)(1) disclosures, shown before consent
    disclosure_sha256: str


@dataclass
class SigningState:
    envelope: SigningEnvelope
    recipient: SigningRecipient
    document: SigningDocument
    consent: SigningConsent
    your_turn: bool
    expires_at: str | None


@dataclass
class SigningDone:
    envelope_id: str
    recipient_id: str
    status: RecipientState
    envelope_status: EnvelopeState


@dataclass(kw_only=True)
class VaultInView(EnvelopeView):
    replayed: bool


@dataclass
class EnvelopePage:
    items: list[EnvelopeSummary]
    next_cursor: str | None


@dataclass
class EnvelopeStatus:
    id: str
    status: EnvelopeState
    vault_state: VaultState
    revision: int
    updated_at: str


@dataclass
class IssuedUrlView:
    id: str
    url: str
    sha256: str
    version_id: str
    expires_at: str
    authoritative: bool
    authoritative_copy_id: str | None = None
    filename: str | None = None
    document_id: str | None = None
    source_sha256: str | None = None


@dataclass
class AuthoritativeUrls:
    envelope_id: str
    documents: list[IssuedUrlView]


@dataclass
class CopyUrls:
    envelope_id: str
    copies: list[IssuedUrlView]


@dataclass
class CheckpointView:
    size: int
    root_hash: str
    note: str
    worm_key: str
    worm_version_id: str


@dataclass
class InclusionProofView:
    leaf_index: int
    tree_size: int
    hashes: list[str]


@dataclass
class ConsistencyProofView:
    first: int
    second: int
    hashes: list[str]


@dataclass
class BundleKey:
    vkey: str
    pem: str


@dataclass
class BundleEvent:
    leaf_index: int
    entry: str
    inclusion_proof: list[str]
    log: str | None = None  # v3: the origin of the log the entry is proven in


@dataclass
class HeadMapLeaf:
    key: str
    seq: int
    entry_hash: str


@dataclass
class HeadMapProof:
    """Siblings from depth 1 down (null: an empty subtree) and the leaf ending the key's path, if any."""

    siblings: list[str | None]
    leaf: HeadMapLeaf | None


@dataclass
class BundleMap:
    """The checkpoint's last entry (a map.root commit, with its inclusion proof) and the envelope's map proof."""

    entry: BundleEvent
    proof: HeadMapProof


@dataclass
class BundleLog:
    """v3: one log's signed checkpoint and the key that signed it."""

    origin: str
    checkpoint: str
    key: BundleKey
    timestamp_token: str | None


@dataclass
class BundleSegment:
    """v3: a run of the chain in one log, and the head-map commit that proves where it ends there."""

    log: str
    first_seq: int
    last_seq: int
    map: BundleMap


@dataclass
class ProofBundleView:
    """``evault-proof-bundle/v2`` (one log), or ``/v3`` for a history that crossed logs at a hand-off of control;
    docs/evidence-formats.md §7 and §7.1 say how to check them."""

    format: Literal["evault-proof-bundle/v2", "evault-proof-bundle/v3"]
    origin: str
    envelope_id: str
    checkpoint: str
    key: BundleKey
    events: list[BundleEvent]
    timestamp_token: str | None
    map: BundleMap | None = None  # v2
    # After a key rotation: the rotation statements from the first key to the one that signed the checkpoint.
    key_chain: list[str] | None = None
    logs: list[BundleLog] | None = None  # v3
    segments: list[BundleSegment] | None = None  # v3


@dataclass
class ConditionView:
    condition: Literal["1", "2", "3", "4", "5", "6"]
    title: str
    status: ConditionStatus
    reasons: list[str]
    evidence: dict[str, Any]


@dataclass
class ComplianceView:
    envelope_id: str
    verdict: ConditionStatus
    conditions: list[ConditionView]


@dataclass
class CertificateSignature:
    alg: Literal["Ed25519"]
    key_id: str
    value: str


@dataclass
class SignedCertificate:
    """``evault-certificate/v1``: ``certificate`` is signed as its RFC 8785 form (docs/evidence-formats.md §8)."""

    certificate: dict[str, Any]
    signature: CertificateSignature


@dataclass
class SignedReceipt:
    """``evault-receipt/v1``: ``receipt`` is signed as its RFC 8785 form (docs/evidence-formats.md, receipts)."""

    receipt: dict[str, Any]
    signature: CertificateSignature


@dataclass
class AuditActor:
    org_id: str | None
    key_id: str | None
    key_prefix: str | None
    source: str | None


@dataclass
class AuditEvent:
    seq: int | None
    leaf_index: int
    time: str | None
    type: str
    actor: AuditActor
    data: dict[str, Any] | None
    prev: str | None
    entry_hash: str
    entry: str


@dataclass
class AuditTrailView:
    format: Literal["evault-audit-trail/v1"]
    envelope_id: str
    log_origin: str
    events: list[AuditEvent]
    personal_data: dict[str, dict[str, Any]]


@dataclass
class TransferLog:
    organisation: str  # the log that holds the record's chain: its own organisation's
    initiated_index: int
    accepted_index: int | None
    completed_index: int | None


@dataclass
class TransferView:
    id: str
    envelope_id: str
    from_organisation: str
    to_organisation: str
    type: TransferType
    status: TransferStatus
    confirm_required: bool
    note: str | None
    reason: str | None
    expires_at: str | None
    created_at: str
    accepted_at: str | None
    completed_at: str | None
    closed_at: str | None
    log: TransferLog


@dataclass
class CountersignatureView:
    """A party's countersignature of a transfer receipt's statement (docs/receipts.md)."""

    transfer_id: str
    org_id: str
    key_id: str
    value: str
    created_at: str


@dataclass
class TransferPage:
    items: list[TransferView]
    next_cursor: str | None


MEANING = {
    304: "Not modified: If-None-Match names the current ETag",
    400: "Bad input (details name the field); nothing changed",
    401: "Missing, malformed, unknown, revoked or expired API key",
    403: "The key lacks this operation's scope",
    404: "No such envelope (or document) in your organisation",
    408: "The body arrived slower than EVAULT_BODY_MIN_BYTES_PER_SECOND allows; the connection is closed",
    409: "The current state (of the envelope, the log or the Idempotency-Key) forbids this now",
    410: "The signing link expired, or its envelope's ceremony ended (voided, declined, expired, completed)",
    412: "If-Match does not match the envelope's ETag; nothing changed",
    413: "Body larger than its limit (EVAULT_MAX_JSON_BYTES for JSON, EVAULT_MAX_UPLOAD_BYTES for PDFs)",
    429: "Rate limit spent; see Retry-After",
    500: "A bug or an integrity failure; quote the request id",
    503: "A dependency (object storage, database) is unavailable; retry",
}
READ_ERRORS = (400, 401, 403, 404, 429, 500, 503)
WRITE_ERRORS = (*READ_ERRORS, 408, 409, 412)
UPLOAD_ERRORS = (*WRITE_ERRORS, 413)
SIGNING_ERRORS = (400, 404, 409, 410, 500, 503)


def answers(status: int, model: type[Any] | None, errors: tuple[int, ...], description: str) -> dict[int, ResponseSpec]:
    """The handler's success answer and every error it may give, each with its typed body."""
    specs = {code: ResponseSpec(data_container=ErrorBody, description=MEANING[code]) for code in errors}
    if 304 in errors:
        specs[304] = ResponseSpec(data_container=None, description=MEANING[304])
    specs[status] = ResponseSpec(data_container=model, description=description, generate_examples=False)
    return specs
