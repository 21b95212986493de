"""Attaching the evidence checks to a vault that is already running, without starting or changing anything.

``evault verify`` runs beside the live service (the nightly job): it must not start a second embedded store,
migrate the schema, mint a signing key or create an empty vault where none is. So it reads only what the
running vault published: the database named by the settings (its schema must already be at the newest
Alembic head), the S3 service (external from the settings; the embedded one from the ``endpoint.json`` its
running server keeps in its config directory) and the vault's *public* key. Anything missing is an
``AttachError``: the check could not run, which is not the same as a clean vault.

The embedded endpoint file is ``<data_dir>/s3/seaweedfs/config/endpoint.json``, read by
:func:`storage.embedded_s3_attach.attach`, which also checks that weed still runs for that directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from compliance.checkpoints.policy import CheckpointTrust
from compliance.errors import Unavailable
from compliance.ledger.key_history import KeyHistory
from compliance.ledger.key_ring import generations, history_of
from compliance.ledger.log_error import LogError
from compliance.ledger.note import NoteVerifier
from compliance.ledger.vault_key import checkpoint_verifier, public_key_path
from compliance.sources import Sources
from storage.buckets import check_worm_bucket
from storage.db import MIGRATIONS, Database
from storage.embedded_s3_attach import EmbeddedS3NotRunning
from storage.embedded_s3_attach import attach as attach_embedded
from storage.errors import BucketNotWorm, StorageError
from storage.object_store import ObjectStore
from storage.s3_client import make_s3_client
from storage.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

NO_VAULT = "Attach.NoVault"  # no database (missing, empty, or not an evault schema)
SCHEMA_NOT_CURRENT = "Attach.SchemaNotCurrent"
STORE_NOT_RUNNING = "Attach.StoreNotRunning"
STORE_UNUSABLE = "Attach.StoreUnusable"
NO_PUBLIC_KEY = "Attach.NoPublicKey"


class AttachError(Unavailable):
    """The running vault could not be found or read: nothing was checked."""


def _check_schema(url: str) -> None:
    """The database exists and its schema is exactly at the newest head (never created, never migrated)."""
    probe_url = url
    if url.startswith("sqlite"):
        path = make_url(url).database
        if not path or path == ":memory:" or not Path(path).is_file() or Path(path).stat().st_size == 0:
            raise AttachError(NO_VAULT, f"no vault database at {path} (wrong directory or EVAULT_DATA_DIR?)")
        probe_url = f"sqlite:///file:{quote(str(Path(path).resolve()))}?mode=ro&uri=true"  # read-only: creates nothing
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    heads = set(ScriptDirectory.from_config(config).get_heads())
    engine = create_engine(probe_url)
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    except SQLAlchemyError as exc:
        raise AttachError(NO_VAULT, f"cannot read the vault database: {exc.__class__.__name__}: {exc}") from None
    finally:
        engine.dispose()
    if not current:
        raise AttachError(NO_VAULT, "the database holds no evault schema")
    if current != heads:
        raise AttachError(
            SCHEMA_NOT_CURRENT,
            "the database schema is not at the newest revision; start the service to migrate it",
            current=sorted(current),
            newest=sorted(heads),
        )


def _verifier(settings: Settings) -> NoteVerifier:
    configured = settings.env.get("EVAULT_PUBLIC_KEY")
    path = Path(configured) if configured else public_key_path(settings.vault.signing_key_path)
    try:
        return checkpoint_verifier(path.read_bytes(), settings.vault.key_name)
    except OSError as exc:
        message = f"cannot read the vault's public key {path} (or set EVAULT_PUBLIC_KEY): {exc}"
        raise AttachError(NO_PUBLIC_KEY, message) from None
    except ValueError as exc:
        raise AttachError(NO_PUBLIC_KEY, f"{path} is not the vault's Ed25519 public key (PEM): {exc}") from None


def _embedded_client(data_dir: Path) -> S3Client:
    """The running embedded store's service endpoint, from what that server published (storage's ``attach``)."""
    try:
        endpoint = attach_embedded(data_dir / "s3")
    except EmbeddedS3NotRunning as exc:
        raise AttachError(STORE_NOT_RUNNING, f"{exc}: start `evault serve`") from None
    return make_s3_client(endpoint.url, endpoint.access_key, endpoint.secret_key, endpoint.region, attempts=1)


def _hash_once(client: S3Client) -> S3Client:
    """Leave the check of a read's SHA-256 to ``ObjectStore.open_read``, which hashes what it receives against
    the stored checksum (and the length) anyway: botocore, asked for the checksum (``ChecksumMode``), would hash
    every byte a second time, a measurable share of the verifier's CPU on two cores."""

    def skip_validation(context: dict[str, Any], **_: Any) -> None:
        context.get("checksum", {}).pop("response_algorithms", None)

    client.meta.events.register("before-call.s3.GetObject", skip_validation)
    return client


def attach_sources(settings: Settings) -> Sources:
    """What the checks read, taken from the running vault; raise :class:`AttachError` if any part is missing."""
    _check_schema(settings.database_url)
    verifier = _verifier(settings)
    s3 = settings.s3
    if s3.embedded:
        client = _embedded_client(settings.data_dir)
    else:
        client = make_s3_client(s3.endpoint, s3.access_key, s3.secret_key, s3.region, attempts=1)
    _hash_once(client)
    try:
        check_worm_bucket(client, s3.authoritative_bucket)
    except BucketNotWorm:
        pass  # reachable but misconfigured: the verifier reports it (Storage.Misconfigured)
    except StorageError as exc:
        raise AttachError(STORE_UNUSABLE, f"the authoritative bucket cannot be checked: {exc}") from None
    db = Database(settings.database_url)
    return Sources(
        db,
        ObjectStore(client, s3.authoritative_bucket),
        ObjectStore(client, s3.copies_bucket),
        verifier,
        settings.vault.log_origin,
        keys=_keys(db, verifier),
        checkpoint_trust=checkpoint_trust(settings),
    )


def checkpoint_trust(settings: Settings) -> CheckpointTrust:
    """The witnesses and TSA the vault is configured with: what dates its checkpoints independently."""
    policy = settings.vault
    roots = policy.tsa_roots_path.read_bytes() if policy.tsa_roots_path else None
    return CheckpointTrust(tuple(vkey for _, vkey in policy.witnesses), 0, roots)


def _keys(db: Database, pinned: NoteVerifier) -> KeyHistory | None:
    """The recorded key generations, each statement checked from the pinned public key (the first key's)."""
    with db.read_session() as session:
        rows = generations(session)
    if not rows:
        return None
    try:
        return history_of(rows, pinned.public_key)
    except LogError as exc:
        raise AttachError(
            NO_PUBLIC_KEY, f"the recorded key rotations do not follow from the public key: {exc}"
        ) from None
