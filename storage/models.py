"""Database tables. Schema changes go through Alembic (``storage/migrations``), never ``create_all``.

Identifiers are prefixed strings (``org_``, ``env_``, ``doc_``, ``cp_``) so that an id in a log line or a
support ticket says what it names. Times are stored as timezone-aware UTC. Log positions and sizes are 64-bit.
Checks and triggers (states, sizes, digests, append-only ledger) live in migration ``0002_invariants``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel


def _utc_column(nullable: bool = False, index: bool = False) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index))


def _json_column(nullable: bool = False) -> Any:
    return Field(sa_column=Column(JSON, nullable=nullable))


def _envelope_of_org(table: str) -> ForeignKeyConstraint:
    """A row names its envelope *and* that envelope's organisation, so the two cannot disagree."""
    return ForeignKeyConstraint(
        ["envelope_id", "org_id"], ["envelope.id", "envelope.org_id"], name=f"fk_{table}_envelope_org"
    )


class Organisation(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=200)
    created_at: datetime = _utc_column()
    # Set by the operator (``evault org ...``), each change a ledger event (docs/parties.md, docs/retention.md).
    mers_org_id: str | None = Field(default=None, max_length=7, unique=True)  # seven digits
    retention_days: int | None = None  # this organisation's default retention; None: EVAULT_RETENTION_DAYS


class ApiKey(SQLModel, table=True):
    """Only the SHA-256 of the key is kept; ``prefix`` names it in lists and logs.

    ``rotated_from`` names the key this one replaced; unique, so a key has at most one successor.
    """

    id: str = Field(primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    prefix: str = Field(max_length=16, index=True)
    key_hash: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=200)
    scopes: list[str] = _json_column()
    created_at: datetime = _utc_column()
    expires_at: datetime | None = _utc_column(nullable=True)
    revoked_at: datetime | None = _utc_column(nullable=True)
    rotated_from: str | None = Field(default=None, foreign_key="apikey.id", unique=True, index=True, max_length=40)


class Envelope(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("id", "org_id", name="uq_envelope_id_org_id"),  # for org-tied keys
        Index(  # one external id per organisation, where one is given
            "ux_envelope_org_external_id",
            "org_id",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
            sqlite_where=text("external_id IS NOT NULL"),
        ),
        Index("ix_envelope_org_created", "org_id", "created_at", "id"),  # the list's stable order
    )

    id: str = Field(primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    kind: str = Field(max_length=16)  # esign | paper
    status: str = Field(max_length=16)
    vault_state: str = Field(max_length=16)  # not_vaulted | vaulted | released
    title: str = Field(max_length=300)
    external_id: str | None = Field(default=None, max_length=200, index=True)
    parties: list[dict[str, Any]] = _json_column()
    secured_party: dict[str, Any] | None = _json_column(nullable=True)
    meta: dict[str, Any] = _json_column()
    revision: int = Field(default=1)  # bumped on every change; the ETag
    created_at: datetime = _utc_column()
    updated_at: datetime = _utc_column()
    expires_at: datetime | None = _utc_column(nullable=True)  # not vaulted by then: expired
    # Who holds it now (docs/transfers.md); None: the organisation that registered it (``org_id``), which keeps
    # its log, its objects' keys and its rows' organisation for good.
    controller_org_id: str | None = Field(default=None, index=True, max_length=40)
    custodian_org_id: str | None = Field(default=None, index=True, max_length=40)

    @property
    def controller(self) -> str:
        """The organisation in control of the record now: it may release it or transfer it."""
        return self.controller_org_id or self.org_id

    @property
    def custodian(self) -> str:
        """The organisation that keeps the record (its location): it may read and retrieve it."""
        return self.custodian_org_id or self.org_id

    def held_by(self, org_id: str) -> bool:
        """Whether ``org_id`` may see the envelope at all: its controller or its custodian."""
        return org_id in (self.controller, self.custodian)


class VaultRecord(SQLModel, table=True):
    """The authoritative copy of one envelope: exists once vaulted, says released forever after vault-out."""

    __tablename__ = "vault_record"
    __table_args__ = (_envelope_of_org("vault_record"),)

    id: str = Field(primary_key=True, max_length=40)  # the authoritative-copy identifier
    envelope_id: str = Field(foreign_key="envelope.id", unique=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    source: str = Field(max_length=16)  # signed | upload
    retain_until: datetime = _utc_column()
    vaulted_at: datetime = _utc_column()
    vaulted_by: str = Field(max_length=40)  # api key id
    released_at: datetime | None = _utc_column(nullable=True)
    released_by: str | None = Field(default=None, max_length=40)
    release_reason: str | None = Field(default=None, max_length=32)
    release_details: dict[str, Any] | None = _json_column(nullable=True)
    legal_hold_reason: str | None = Field(default=None, max_length=500)  # held while set (docs/retention.md)
    legal_hold_since: datetime | None = _utc_column(nullable=True)
    disposed_at: datetime | None = _utc_column(nullable=True)  # its object versions were deleted after retention


class VaultedDocument(SQLModel, table=True):
    """One PDF of an authoritative copy: addressed by S3 key *and* version id, never by key alone."""

    __tablename__ = "vaulted_document"
    __table_args__ = (UniqueConstraint("record_id", "position"),)

    id: str = Field(primary_key=True, max_length=40)
    record_id: str = Field(foreign_key="vault_record.id", index=True, max_length=40)
    position: int
    filename: str = Field(max_length=255)
    sha256: str = Field(max_length=64)
    size: int = Field(sa_type=BigInteger)
    page_count: int
    s3_bucket: str = Field(max_length=63)
    s3_key: str = Field(max_length=1024)
    s3_version_id: str = Field(max_length=1024)
    signatures: dict[str, Any] | None = _json_column(nullable=True)  # graded result of its signatures


class CopyRecord(SQLModel, table=True):
    """A registered non-authoritative copy: its own id and hash, traceable to its source and requester."""

    __tablename__ = "copy_record"
    __table_args__ = (_envelope_of_org("copy_record"),)

    id: str = Field(primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    envelope_id: str = Field(foreign_key="envelope.id", index=True, max_length=40)
    document_id: str = Field(foreign_key="vaulted_document.id", max_length=40)
    source_sha256: str = Field(max_length=64)
    sha256: str = Field(max_length=64)
    size: int = Field(sa_type=BigInteger)
    s3_bucket: str = Field(max_length=63)
    s3_key: str = Field(max_length=1024)
    s3_version_id: str = Field(max_length=1024)
    issued_at: datetime = _utc_column()
    issued_by: str = Field(max_length=40)
    # When these bytes passed the mark check at issuance (once, in the stamper); the compliance checks trust
    # this with the ledger's hash instead of re-reading the copy. None: issued before migration 0010.
    mark_verified_at: datetime | None = _utc_column(nullable=True)


class Event(SQLModel, table=True):
    """One ledger entry: a link of its envelope's hash chain and a leaf of its organisation's Merkle log.

    An envelope's entries sit in its organisation's log until a hand-off of control moves the chain to the
    receiver's, so ``org_id`` names the log, not necessarily the envelope's organisation.

    ``entry`` is the exact canonical (RFC 8785) bytes that were hashed; everything else is an index into it.
    """

    __table_args__ = (
        UniqueConstraint("org_id", "leaf_index"),
        UniqueConstraint("envelope_id", "chain_seq"),
    )

    id: int | None = Field(default=None, primary_key=True)
    org_id: str = Field(foreign_key="organisation.id", max_length=40)
    leaf_index: int = Field(sa_type=BigInteger)
    envelope_id: str | None = Field(default=None, foreign_key="envelope.id", index=True, max_length=40)
    chain_seq: int | None = Field(default=None, sa_type=BigInteger)
    event_type: str = Field(max_length=64)
    occurred_at: datetime = _utc_column()
    entry: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    entry_hash: str = Field(max_length=64)  # SHA-256(entry): the chain link the next entry names


class LogState(SQLModel, table=True):
    """The size of an organisation's log; its row is the lock that serialises appends."""

    __tablename__ = "log_state"

    org_id: str = Field(primary_key=True, foreign_key="organisation.id", max_length=40)
    size: int = Field(default=0, sa_type=BigInteger)


class LogTile(SQLModel, table=True):
    """Tessera-style tile: up to 256 consecutive node hashes of one tree level, concatenated."""

    __tablename__ = "log_tile"

    org_id: str = Field(primary_key=True, foreign_key="organisation.id", max_length=40)
    level: int = Field(primary_key=True)
    idx: int = Field(primary_key=True, sa_type=BigInteger)
    hashes: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    # The parents complete inside the tile, in completion order; NULL on rows from before migration 0021.
    interior: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class Checkpoint(SQLModel, table=True):
    """A signed checkpoint, also written to the WORM bucket at ``s3_key`` so a database edit shows."""

    org_id: str = Field(primary_key=True, foreign_key="organisation.id", max_length=40)
    size: int = Field(primary_key=True, sa_type=BigInteger)
    root_hash: str = Field(max_length=64)
    note: str
    s3_key: str = Field(max_length=1024)
    s3_version_id: str = Field(max_length=1024)
    timestamp_token: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    created_at: datetime = _utc_column()


class VaultClaim(SQLModel, table=True):
    """A vault-in in flight: committed before the S3 put so a concurrent loser never writes an object.

    One per envelope (the primary key). ``plan`` holds everything the record step needs (documents with their
    keys, secured party, caller metadata, actor), so a reconcile step can finish a claim whose request died
    between the put and the record, or release it when its objects never arrived.
    """

    __tablename__ = "vault_claim"

    envelope_id: str = Field(primary_key=True, foreign_key="envelope.id", max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    claim_id: str = Field(max_length=40, unique=True)
    digests: list[str] = _json_column()
    plan: dict[str, Any] = _json_column()
    claimed_at: datetime = _utc_column()
    lease_until: datetime = _utc_column()  # until then the claim belongs to the request holding claim_id


class CopyClaim(SQLModel, table=True):
    """A copy in flight: committed before its object is put in the copies bucket, deleted with its register row.

    A request that dies between the put and the register (a killed process) leaves its object unregistered;
    the claim names it, so the verifier takes it for a copy on its way within the grace period, and the
    reconciler deletes the object (the copies bucket is not locked) and the claim once the grace has passed.
    """

    __tablename__ = "copy_claim"

    copy_id: str = Field(primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    envelope_id: str = Field(foreign_key="envelope.id", max_length=40)
    s3_key: str = Field(max_length=1024)
    claimed_at: datetime = _utc_column()


class MapLeaf(SQLModel, table=True):
    """One envelope's head in the head map as of ``version`` (the log size the map covers); rows are only added.

    The map at version V is, per key, the row with the greatest version <= V: enough to rebuild any past map.
    """

    __tablename__ = "map_leaf"
    __table_args__ = (Index("ix_map_leaf_org_version", "org_id", "version"),)

    org_id: str = Field(primary_key=True, foreign_key="organisation.id", max_length=40)
    envelope_key: str = Field(primary_key=True, max_length=64)  # hex SHA-256 of the envelope id
    version: int = Field(primary_key=True, sa_type=BigInteger)
    seq: int = Field(sa_type=BigInteger)
    entry_hash: str = Field(max_length=64)


class MapRoot(SQLModel, table=True):
    """The head map's root at one version, and the leaf index of the ``map.root`` log entry that commits it."""

    __tablename__ = "map_root"

    org_id: str = Field(primary_key=True, foreign_key="organisation.id", max_length=40)
    version: int = Field(primary_key=True, sa_type=BigInteger)
    root_hash: str = Field(max_length=64)
    entry_index: int = Field(sa_type=BigInteger)


class MapNode(SQLModel, table=True):
    """A head-map node as of ``version``, stored only at the versions that changed it; rows are only added.

    ``node`` is the heap id ``(1 << depth) | prefix`` in hex (the root is "1"); ``leaf_key`` is the envelope key a
    leaf holds, null for an interior node. The map at version V is, per node, the row with the greatest
    version <= V, so a proof at any version reads one path (compliance/headmap/stored_tree.py).
    """

    __tablename__ = "map_node"

    org_id: str = Field(primary_key=True, foreign_key="organisation.id", max_length=40)
    node: str = Field(primary_key=True, max_length=65)
    version: int = Field(primary_key=True, sa_type=BigInteger)
    hash: str = Field(max_length=64)
    leaf_key: str | None = Field(default=None, max_length=64)


class StagedDocument(SQLModel, table=True):
    """A pre-signed PDF uploaded to a paper envelope and waiting for vault-in: not locked, and it expires."""

    __tablename__ = "staged_document"

    id: str = Field(primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    envelope_id: str = Field(foreign_key="envelope.id", index=True, max_length=40)
    filename: str = Field(max_length=255)
    sha256: str = Field(max_length=64)
    size: int
    s3_bucket: str = Field(max_length=63)
    s3_key: str = Field(max_length=1024)
    s3_version_id: str = Field(max_length=1024)
    staged_at: datetime = _utc_column()
    expires_at: datetime = _utc_column(index=True)


class DataSubject(SQLModel, table=True):
    """A person named in an envelope (a party): the clear values and the key their log commitment is made with.

    The permanent log holds only ``HMAC-SHA256(key, RFC 8785 of the values)``. Erasure nulls ``key`` and
    ``clear`` (crypto-shredding): the commitment in the log stays, and can no longer be opened or guessed at.
    One key per subject, never per organisation, so erasing one person leaves everyone else readable.
    """

    __tablename__ = "data_subject"
    __table_args__ = (_envelope_of_org("data_subject"),)

    id: str = Field(primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    envelope_id: str = Field(index=True, max_length=40)
    key: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    clear: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))
    created_at: datetime = _utc_column()
    erased_at: datetime | None = _utc_column(nullable=True)


class IdempotencyRecord(SQLModel, table=True):
    """One ``Idempotency-Key`` of one organisation: in flight (``status`` null) or its first response."""

    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("org_id", "key"),)

    id: str = Field(primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", max_length=40)
    key: str = Field(max_length=255)
    fingerprint: str = Field(max_length=64)
    status: int | None = None
    body: Any = _json_column(nullable=True)
    headers: dict[str, str] | None = _json_column(nullable=True)
    created_at: datetime = _utc_column()
    expires_at: datetime = _utc_column(index=True)


class RateCounter(SQLModel, table=True):
    """Requests of one subject in one fixed window of one policy, shared by every worker: the subject is an API
    key or an organisation, whichever the policy counts (vault/ratelimit.py). A paced policy has one row (window
    start 0) and keeps its theoretical arrival time in ``tat``."""

    __tablename__ = "rate_counter"

    subject: str = Field(primary_key=True, max_length=40)
    policy: str = Field(primary_key=True, max_length=32)
    window_start: int = Field(primary_key=True)  # epoch seconds
    count: int = 0
    tat: float | None = None  # epoch seconds; paced policies only


class SlotLease(SQLModel, table=True):
    """One held slot of a shared in-flight cap (vault/slot_leases.py): slot ``slot`` of ``cap`` concurrent
    holders of ``pool`` for ``scope`` (an API key or an organisation), held by one request of process ``holder``
    until released, or until ``expires_at`` (epoch seconds) if that process stops renewing it (it died)."""

    __tablename__ = "slot_lease"

    pool: str = Field(primary_key=True, max_length=16)
    scope: str = Field(primary_key=True, max_length=40)
    slot: int = Field(primary_key=True)
    holder: str = Field(max_length=80, index=True)
    ticket: str = Field(max_length=32)
    expires_at: float


class VerifyRun(SQLModel, table=True):
    """One run of the nightly verifier: its fixed scope, code version, counts and verdict."""

    __tablename__ = "verify_run"

    id: str = Field(primary_key=True, max_length=40)
    started_at: datetime = _utc_column()
    finished_at: datetime | None = _utc_column(nullable=True)
    status: str = Field(max_length=16)  # running | finished | failed
    scope: dict[str, Any] = _json_column()
    code_version: str = Field(max_length=200)
    counts: dict[str, Any] = _json_column()
    verdict: str | None = Field(default=None, max_length=16)  # clean | findings


class VerifyProgress(SQLModel, table=True):
    """How far one unit of a run's work (objects, copies or the log of one organisation) durably got."""

    __tablename__ = "verify_progress"

    run_id: str = Field(primary_key=True, foreign_key="verify_run.id", max_length=40)
    unit: str = Field(primary_key=True, max_length=120)
    state: str = Field(max_length=16)  # pending | done
    position: str | None = Field(default=None, max_length=1024)  # every key <= this one is checked
    checked: int = Field(default=0, sa_type=BigInteger)
    updated_at: datetime = _utc_column()


class VerifyFinding(SQLModel, table=True):
    """A finding of one run, kept once per fingerprint (a resumed run finds it again without a duplicate)."""

    __tablename__ = "verify_finding"

    run_id: str = Field(primary_key=True, foreign_key="verify_run.id", max_length=40)
    fingerprint: str = Field(primary_key=True, max_length=64)
    code: str = Field(max_length=64)
    org_id: str | None = Field(default=None, max_length=40)
    subject: dict[str, Any] = _json_column()
    message: str
    details: dict[str, Any] = _json_column()
    found_at: datetime = _utc_column()


class OpenFinding(SQLModel, table=True):
    """A fault seen and not yet seen fixed: recorded in the ledger once, not again every night."""

    __tablename__ = "open_finding"

    fingerprint: str = Field(primary_key=True, max_length=64)
    code: str = Field(max_length=64)
    org_id: str | None = Field(default=None, max_length=40)
    subject: dict[str, Any] = _json_column()
    first_run_id: str = Field(max_length=40)
    first_seen_at: datetime = _utc_column()
    last_run_id: str = Field(max_length=40)
    last_seen_at: datetime = _utc_column()
    event_leaf_index: int | None = Field(default=None, sa_type=BigInteger)
    closed_at: datetime | None = _utc_column(nullable=True)


class SigningKey(SQLModel, table=True):
    """One generation of the vault's signing key: where it lives, from when it signs, and its statements.

    Generation 0 is the first key (no statement); each later one carries the rotation note signed by the outgoing
    and the incoming key. ``revocation`` is the signed note that the key was compromised from ``compromised_since``.
    """

    __tablename__ = "signing_key"

    generation: int = Field(primary_key=True)
    vkey: str = Field(max_length=200, unique=True)
    public_pem: str
    key_ref: str = Field(max_length=1024)  # a PEM file path, or pkcs11:<key label>
    valid_from: datetime = _utc_column()
    statement: str | None = None
    compromised_since: datetime | None = _utc_column(nullable=True)
    revocation: str | None = None


class WebhookConfig(SQLModel, table=True):
    """An organisation's webhook endpoint and signing key (Standard Webhooks); one per organisation.

    ``secret`` is ``whsec_...`` (HMAC-SHA256, signatures ``v1``) or ``whsk_...`` (Ed25519, ``v1a``: receivers
    hold only its public key). ``previous_secret`` still signs beside it until ``previous_until`` (a rotation).
    While ``disabled_at`` is set nothing is sent or queued (``disabled_reason`` says why: a 410 Gone, or the
    organisation's own choice).
    """

    __tablename__ = "webhook_config"

    org_id: str = Field(primary_key=True, foreign_key="organisation.id", max_length=40)
    url: str = Field(max_length=2048)
    secret: str = Field(max_length=200)
    previous_secret: str | None = Field(default=None, max_length=200)
    previous_until: datetime | None = _utc_column(nullable=True)
    created_at: datetime = _utc_column()
    updated_at: datetime = _utc_column()
    disabled_at: datetime | None = _utc_column(nullable=True)
    disabled_reason: str | None = Field(default=None, max_length=200)


class WebhookDelivery(SQLModel, table=True):
    """One event bound for an organisation's webhook: the outbox row, written in the event's own transaction.

    ``body`` is the exact JSON sent on every attempt; ``webhook_id`` stays the same across retries so that
    receivers de-duplicate. ``claimed_by`` is the sender lease's fencing token while an attempt is in flight.
    """

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
        Index("ix_webhook_delivery_org_created", "org_id", "created_at", "id"),
    )

    id: str = Field(primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", max_length=40)
    webhook_id: str = Field(max_length=40, unique=True)
    event_type: str = Field(max_length=64)
    leaf_index: int = Field(sa_type=BigInteger)
    envelope_id: str | None = Field(default=None, max_length=40)
    body: str
    status: str = Field(max_length=16)  # pending | delivered | failed
    attempts: int = 0
    retry_step: int = 0  # position in the retry schedule; a redelivery starts it again
    next_attempt_at: datetime | None = _utc_column(nullable=True)
    claimed_by: int | None = Field(default=None, sa_type=BigInteger)
    created_at: datetime = _utc_column()
    last_attempt_at: datetime | None = _utc_column(nullable=True)


class WebhookAttempt(SQLModel, table=True):
    """One attempt to deliver: when, where to, and what came of it (HTTP status, or the error)."""

    __tablename__ = "webhook_attempt"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(foreign_key="webhook_delivery.id", index=True, max_length=40)
    attempted_at: datetime = _utc_column()
    outcome: str = Field(max_length=16)  # delivered | http_error | timeout | network_error | refused | no_webhook
    http_status: int | None = None
    error: str | None = Field(default=None, max_length=500)
    duration_ms: int = 0


class Transfer(SQLModel, table=True):
    """A transfer of control and/or location of one envelope between two organisations (docs/transfers.md).

    ``org_id`` is the envelope's own organisation (whose log records the transfer); ``from_org_id`` the one in
    control when it began. At most one transfer per envelope is open (pending or accepted) at a time.
    """

    __tablename__ = "transfer"
    __table_args__ = (
        _envelope_of_org("transfer"),
        Index(
            "ux_transfer_open_per_envelope",
            "envelope_id",
            unique=True,
            postgresql_where=text("status IN ('pending', 'accepted')"),
            sqlite_where=text("status IN ('pending', 'accepted')"),
        ),
        Index("ix_transfer_from_created", "from_org_id", "created_at", "id"),
        Index("ix_transfer_to_created", "to_org_id", "created_at", "id"),
    )

    id: str = Field(primary_key=True, max_length=40)
    envelope_id: str = Field(foreign_key="envelope.id", index=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", max_length=40)
    from_org_id: str = Field(foreign_key="organisation.id", max_length=40)
    to_org_id: str = Field(foreign_key="organisation.id", max_length=40)
    type: str = Field(max_length=32)  # control | location | control_and_location
    status: str = Field(max_length=16)  # pending | accepted | completed | rejected | cancelled | expired
    confirm_required: bool = False
    note: str | None = Field(default=None, max_length=1000)
    reason: str | None = Field(default=None, max_length=1000)  # of a rejection
    expires_at: datetime | None = _utc_column(nullable=True, index=True)
    created_at: datetime = _utc_column()
    created_by: str = Field(max_length=40)  # api key id
    accepted_at: datetime | None = _utc_column(nullable=True)
    accepted_by: str | None = Field(default=None, max_length=40)
    completed_at: datetime | None = _utc_column(nullable=True)
    closed_at: datetime | None = _utc_column(nullable=True)  # rejected, cancelled or expired
    closed_by: str | None = Field(default=None, max_length=40)
    initiated_index: int = Field(sa_type=BigInteger)  # leaf index of its transfer.initiated entry
    accepted_index: int | None = Field(default=None, sa_type=BigInteger)
    completed_index: int | None = Field(default=None, sa_type=BigInteger)


class Lease(SQLModel, table=True):
    """A named job's lease (storage/leases.py): whoever holds an unexpired one works; ``token`` grows with every
    new tenure and fences the holder's writes."""

    __tablename__ = "lease"

    name: str = Field(primary_key=True, max_length=80)
    holder: str = Field(max_length=80)
    token: int = Field(default=0, sa_type=BigInteger)
    expires_at: datetime = _utc_column()


class SharedSecret(SQLModel, table=True):
    """A fingerprint of a secret every process of the vault must hold alike (vault/shared_secrets.py): the first
    process to start records it, and a process started with another one is refused."""

    __tablename__ = "shared_secret"

    name: str = Field(primary_key=True, max_length=40)
    fingerprint: str = Field(max_length=100)
    recorded_at: datetime = _utc_column()


class MersMin(SQLModel, table=True):
    """A MIN registered in this vault: one row per MIN for good (no update or delete), so none is ever reused,
    even once its envelope is voided, released or disposed of. ``envelope_id`` is unique: one MIN per envelope."""

    __tablename__ = "mers_min"

    min: str = Field(primary_key=True, max_length=18)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    envelope_id: str = Field(unique=True, max_length=40)
    registered_at: datetime = _utc_column()


class Amendment(SQLModel, table=True):
    """A modification or assumption recorded beside the authoritative copy, never in it; its PDFs are vaulted
    write-once under their own keys. The ``vault.amended`` event is the truth; this row is its projection."""

    __table_args__ = (_envelope_of_org("amendment"), UniqueConstraint("envelope_id", "position"))

    id: str = Field(primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    envelope_id: str = Field(index=True, max_length=40)
    position: int  # 0, 1, ... in the order recorded
    type: str = Field(max_length=16)  # modification | assumption
    data: dict[str, Any] = _json_column()
    documents: list[dict[str, Any]] = _json_column()  # id, filename, sha256, size, pages, bucket, key, version_id
    recorded_at: datetime = _utc_column()
    recorded_by: str = Field(max_length=40)  # api key id


class AmendmentClaim(SQLModel, table=True):
    """An amendment whose PDFs are being written: committed before the S3 puts, turned into the amendment after
    (the vault-in pattern). One per envelope at a time; a stale one is taken over by the next request."""

    __tablename__ = "amendment_claim"

    envelope_id: str = Field(primary_key=True, foreign_key="envelope.id", max_length=40)
    org_id: str = Field(foreign_key="organisation.id", max_length=40)
    claim_id: str = Field(max_length=40, unique=True)
    plan: dict[str, Any] = _json_column()
    lease_until: datetime = _utc_column()


class PaperInAttestation(SQLModel, table=True):
    """The custodian's word about a paper envelope's wet-ink original. Who attested is personal data (a
    person): its clear value is in a ``data_subject`` row, and the log (and this row) hold only its commitment."""

    __tablename__ = "paper_in_attestation"
    __table_args__ = (_envelope_of_org("paper_in_attestation"),)

    id: str = Field(primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    envelope_id: str = Field(index=True, max_length=40)
    original: str = Field(max_length=16)  # held | destroyed
    at: datetime = _utc_column()  # when it was held (checked) or destroyed
    location: str | None = Field(default=None, max_length=500)
    attested_by: dict[str, Any] = _json_column()  # {"subject": "sub_...", "commitment": hex}, as the log holds it
    recorded_at: datetime = _utc_column()
    recorded_by: str = Field(max_length=40)


class Ceremony(SQLModel, table=True):
    """An e-sign envelope's ceremony: the document its recipients sign, when it was sent, and its sealed result.

    The document is vetted like any upload and kept in the staging bucket; ``pages`` holds each page's
    (width, height) in PDF points, so fields are checked against it. ``sealed_*`` name the sealed PDF once it
    exists: from then on vault-in (or the reconciler) vaults those very bytes, never a second seal.
    """

    __table_args__ = (_envelope_of_org("ceremony"),)

    envelope_id: str = Field(primary_key=True, foreign_key="envelope.id", max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    document_id: str | None = Field(default=None, max_length=40)
    filename: str | None = Field(default=None, max_length=255)
    sha256: str | None = Field(default=None, max_length=64)
    size: int | None = Field(default=None, sa_type=BigInteger)
    s3_key: str | None = Field(default=None, max_length=1024)
    s3_version_id: str | None = Field(default=None, max_length=1024)
    pages: list[list[float]] | None = _json_column(nullable=True)
    sent_at: datetime | None = _utc_column(nullable=True)
    sent_by: dict[str, Any] | None = _json_column(nullable=True)  # the actor of send: the one who vaults it in
    reminded_at: datetime | None = _utc_column(nullable=True)
    sealed_sha256: str | None = Field(default=None, max_length=64)
    sealed_size: int | None = Field(default=None, sa_type=BigInteger)
    sealed_key: str | None = Field(default=None, max_length=1024)
    sealed_version_id: str | None = Field(default=None, max_length=1024)
    sealed_at: datetime | None = _utc_column(nullable=True)


class Recipient(SQLModel, table=True):
    """One person of the signing roster: name and email live in their data subject; the link's nonce here.

    The link's token is an HMAC of the id and ``link_nonce`` under the server's secret: the database alone
    cannot make one, and the same link can be served again.
    """

    __table_args__ = (_envelope_of_org("recipient"),)

    id: str = Field(primary_key=True, max_length=40)
    envelope_id: str = Field(foreign_key="envelope.id", index=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    subject_id: str = Field(max_length=40)
    role: str = Field(max_length=16)  # signer | viewer
    signing_order: int
    position: int  # where the roster listed them: the order among equals
    fields: list[dict[str, Any]] = _json_column()
    status: str = Field(max_length=16)  # pending | viewed | consented | signed | declined
    link_nonce: str = Field(max_length=64)
    viewed_at: datetime | None = _utc_column(nullable=True)
    consented_at: datetime | None = _utc_column(nullable=True)
    signed_at: datetime | None = _utc_column(nullable=True)
    declined_at: datetime | None = _utc_column(nullable=True)
    signature: dict[str, Any] | None = _json_column(nullable=True)  # the adopted signature (typed name, image)
    decline_reason: str | None = Field(default=None, max_length=500)
    # Rebuilt from the log alone (docs/rebuild.md): the link nonce is new, and the adopted signature's name and
    # image, the decline reason and the person's clear values are to come from a backup (evault restore).
    restore_pending: bool = False


class MailMessage(SQLModel, table=True):
    """An email owed to a recipient (their link, or a reminder): queued with the change, sent after commit."""

    __tablename__ = "mail_message"
    __table_args__ = (Index("ix_mail_message_due", "status", "next_attempt_at"),)

    id: str = Field(primary_key=True, max_length=40)
    org_id: str = Field(foreign_key="organisation.id", max_length=40)
    envelope_id: str = Field(max_length=40)
    recipient_id: str = Field(foreign_key="recipient.id", max_length=40)
    kind: str = Field(max_length=16)  # link | reminder
    status: str = Field(max_length=16)  # pending | sent | failed
    attempts: int = 0
    next_attempt_at: datetime | None = _utc_column(nullable=True)
    created_at: datetime = _utc_column()
    sent_at: datetime | None = _utc_column(nullable=True)
    last_error: str | None = Field(default=None, max_length=500)


class EmbedOrigin(SQLModel, table=True):
    """An origin (``scheme://host[:port]``) allowed to frame an organisation's embedded signing page.

    The page's ``Content-Security-Policy: frame-ancestors`` lists them; an organisation with none gets ``'none'``.
    Set by the operator (``evault org origins``), not through the partner API.
    """

    __tablename__ = "embed_origin"

    org_id: str = Field(primary_key=True, foreign_key="organisation.id", max_length=40)
    origin: str = Field(primary_key=True, max_length=300)
    created_at: datetime = _utc_column()


class EnvelopeImport(SQLModel, table=True):
    """One import of another vault's export package (docs/vault-transfer.md): claimed before its objects are
    written, recorded with the envelope and its ``envelope.imported`` event. A release event of another vault's
    log (its origin and leaf index) is imported once into this vault, whichever organisation tries again."""

    __tablename__ = "envelope_import"
    __table_args__ = (UniqueConstraint("origin_log", "release_leaf_index", name="ux_envelope_import_release"),)

    envelope_id: str = Field(primary_key=True, max_length=40)  # the envelope it becomes here
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    origin_log: str = Field(max_length=300)  # the sending vault's log origin (its checkpoint's first line)
    origin_envelope_id: str = Field(max_length=40)
    release_leaf_index: int = Field(sa_type=BigInteger)  # of its vault.released entry in the origin log
    origin_key_id: str = Field(max_length=80)  # sha256:<hex> of the sending vault's key that signed the package
    release_receipt_sha256: str = Field(max_length=64)
    claimed_at: datetime = _utc_column()
    retain_until: datetime = _utc_column()  # the COMPLIANCE lock date its objects are put with, fixed at the claim
    recorded_at: datetime | None = _utc_column(nullable=True)


class OrgSigningKey(SQLModel, table=True):
    """An organisation's own Ed25519 public key, registered by the operator (``evault org add-signing-key``,
    logged as ``org.signing_key_added``): a party countersigns its transfer receipts with the private half."""

    __tablename__ = "org_signing_key"

    key_id: str = Field(primary_key=True, max_length=80)  # sha256:<hex of the key's SPKI DER>
    org_id: str = Field(foreign_key="organisation.id", index=True, max_length=40)
    public_pem: str = Field(max_length=400)
    created_at: datetime = _utc_column()


class ReceiptCountersignature(SQLModel, table=True):
    """A party's Ed25519 signature over a completed transfer's receipt statement (docs/receipts.md), one per party;
    logged as ``transfer.countersigned`` in the party's own log."""

    __tablename__ = "receipt_countersignature"

    transfer_id: str = Field(primary_key=True, foreign_key="transfer.id", max_length=40)
    org_id: str = Field(primary_key=True, foreign_key="organisation.id", max_length=40)
    key_id: str = Field(foreign_key="org_signing_key.key_id", max_length=80)
    value: str = Field(max_length=100)  # base64 of the 64-byte signature
    created_at: datetime = _utc_column()
