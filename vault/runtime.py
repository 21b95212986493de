"""Opening the vault: storage, database, key and checkpointer, checked before anything is served.

The API, the CLI and the tests all open the vault here, so the start-up checks (the authoritative bucket
really has Object Lock and versioning, the schema is migrated, the signing key loads) run the same way for
every front door.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from compliance.ledger.checkpoints import CheckpointService
from compliance.ledger.cosignature import CosignatureVerifier
from compliance.ledger.timestamping import TimestampClient
from compliance.ledger.witness_client import WitnessClient
from compliance.signing import VaultKey, load_or_create_key
from compliance.sources import Sources
from storage.db import Database
from storage.embedded_s3 import EmbeddedS3
from storage.errors import BucketNotWorm, StorageError
from storage.object_store import ObjectStore, check_worm_bucket, ensure_bucket, make_s3_client
from storage.settings import Settings

log = logging.getLogger("evault")


class StartupError(RuntimeError):
    """The vault refuses to start; the message says what to fix."""


@dataclass
class Runtime:
    settings: Settings
    db: Database
    s3_client: Any
    authoritative: ObjectStore
    copies: ObjectStore
    key: VaultKey
    checkpoints: CheckpointService
    embedded_s3: EmbeddedS3 | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _checkpointer: threading.Thread | None = None

    def sources(self) -> Sources:
        """What the evidence checks read, without the signing key or the checkpointer."""
        return Sources(self.db, self.authoritative, self.copies, self.key.note_verifier, self.settings.vault.log_origin)

    @property
    def public_s3_endpoint(self) -> str | None:
        return self.settings.s3.public_endpoint or None

    def start_checkpointer(self) -> None:
        interval = self.settings.vault.checkpoint_interval_seconds

        def report(org_id: str | None, exc: Exception) -> None:
            code = getattr(exc, "code", type(exc).__name__)
            log.warning("checkpointing %s failed, will retry: %s: %s", org_id or "(all)", code, exc)

        self._checkpointer = threading.Thread(
            target=self.checkpoints.run_periodically,
            args=(interval, self._stop, report),
            daemon=True,
            name="evault-checkpointer",
        )
        self._checkpointer.start()

    def close(self) -> None:
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=30)
        self.db.dispose()
        if self.embedded_s3 is not None:
            self.embedded_s3.stop()


def open_runtime(settings: Settings) -> Runtime:
    """Start (or connect to) every part and check it; on any failure stop what was started and raise."""
    embedded: EmbeddedS3 | None = None
    s3 = settings.s3
    try:
        if s3.embedded:
            embedded = EmbeddedS3(settings.data_dir / "s3", s3.embedded_port_base)
            endpoint = embedded.start()
            client = make_s3_client(endpoint.url, endpoint.access_key, endpoint.secret_key, endpoint.region)
        else:
            client = make_s3_client(s3.endpoint, s3.access_key, s3.secret_key, s3.region)
        if s3.create_buckets:
            ensure_bucket(client, s3.authoritative_bucket, object_lock=True)
            ensure_bucket(client, s3.copies_bucket, object_lock=False)
        try:
            check_worm_bucket(client, s3.authoritative_bucket)
        except BucketNotWorm as exc:
            raise StartupError(
                f"refusing to start: bucket {s3.authoritative_bucket!r} cannot hold authoritative copies: {exc}"
            ) from exc
        db = Database(settings.database_url)
        db.migrate()
        key = load_or_create_key(
            settings.vault.signing_key_path,
            settings.vault.key_name,
            create="EVAULT_SIGNING_KEY" not in settings.env,
        )
    except StorageError as exc:
        if embedded is not None:
            embedded.stop()
        raise StartupError(f"refusing to start: object storage is not usable: {exc}") from exc
    except BaseException:
        if embedded is not None:
            embedded.stop()
        raise
    authoritative = ObjectStore(client, s3.authoritative_bucket)
    retention = timedelta(days=settings.vault.retention_days)
    policy = settings.vault
    cosigners = [WitnessClient(url, CosignatureVerifier.from_vkey(vkey), timeout=10) for url, vkey in policy.witnesses]
    timestamper = None
    if policy.tsa_url and policy.tsa_roots_path is not None:
        timestamper = TimestampClient(policy.tsa_url, policy.tsa_roots_path.read_bytes(), timeout=10)
    return Runtime(
        settings=settings,
        db=db,
        s3_client=client,
        authoritative=authoritative,
        copies=ObjectStore(client, s3.copies_bucket),
        key=key,
        checkpoints=CheckpointService(
            db, authoritative, key.note_signer, policy.log_origin, retention, cosigners, timestamper
        ),
        embedded_s3=embedded,
    )
