"""Opening the vault: storage, database, key and checkpointer, checked before anything is served.

The API, the CLI and the tests all open the vault here, so the start-up checks (the authoritative bucket
really has Object Lock and versioning, the schema is migrated, the signing key loads) run the same way for
every front door.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from compliance.attach import checkpoint_trust
from compliance.checkpoints.publisher import CheckpointService
from compliance.checkpoints.timestamping import TimestampClient
from compliance.ledger.key_ring import (
    current_key,
    first_key_recorded,
    history,
    key_of_generation,
    load_signer,
    record_first_key,
)
from compliance.ledger.signer import Signer
from compliance.ledger.vault_key import SigningKeyError, VaultKey, discard_key_file, load_or_create_key
from compliance.signatures.document_identity import DocumentSigner, load_or_create_document_signer
from compliance.signatures.pdf_validation import load_trust_roots
from compliance.sources import Deadline, Sources
from compliance.verifier.report import ReportKey, endorse_report_key
from compliance.witness.client import WitnessClient
from compliance.witness.cosignature import CosignatureVerifier
from storage.buckets import check_worm_bucket, ensure_bucket
from storage.db import Database
from storage.embedded_s3 import EmbeddedS3, S3Endpoint
from storage.errors import BucketNotWorm, StorageError
from storage.leases import give_up, new_holder, take_lease
from storage.object_store import ObjectStore
from storage.s3_client import make_s3_client
from storage.settings import EvidenceWorkSettings, Settings
from vault.ceremony.completion import reconcile_ceremonies
from vault.ceremony.context import Ceremonies
from vault.ceremony.mail import WAKE as MAIL_WAKE
from vault.ceremony.mail import run_mailer
from vault.ceremony.tokens import load_or_create_secret
from vault.checkpoint_requests import CheckpointRequests
from vault.custody import Custody
from vault.evidence_work import EvidenceWork, Joining
from vault.expiry import sweep_deadlines, sweep_staged
from vault.metrics.instruments import CHECKPOINT_FAILURES, failure_cause
from vault.reconcile import reconcile_claims, reconcile_copy_claims
from vault.shared_secrets import SecretsDiffer, check_held, held
from vault.stamp_worker import warm_stampers
from vault.webhooks.config import seal_stored_keys
from vault.webhooks.outbox import install_outbox
from vault.webhooks.secret_box import SecretBox
from vault.webhooks.sender import Sender
from vault.worker_pool import close_pools

log = logging.getLogger("evault")
EVIDENCE_STOP_SECONDS = 5.0  # at close, for cancelled evidence jobs to reach their next step
THREADS_STOP_SECONDS = 15.0  # at close, for the background threads together (they are daemons: then we go on)


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
    webhook_box: SecretBox  # seals and opens the webhooks' keys in the database
    embedded_s3: EmbeddedS3 | None = None
    document_signer: DocumentSigner | None = None  # signs certificate PDFs (PAdES, ECDSA P-256)
    signer_trust_roots: tuple[Any, ...] = ()
    probe_client: Any = None  # short timeouts, no retries: for readiness checks that must answer quickly
    report_key: ReportKey | None = None  # the verifier's report-signing key, endorsed by the vault key
    # the bounded pool the evidence routes run in (open_runtime gives it the configured caps)
    evidence_work: EvidenceWork = field(default_factory=lambda: EvidenceWork(EvidenceWorkSettings()))
    _stop: threading.Event = field(default_factory=threading.Event)
    _checkpointer: threading.Thread | None = None
    _watchdog: threading.Thread | None = None
    _reconciler: threading.Thread | None = None
    _sweeper: threading.Thread | None = None
    _staging_sweeper: threading.Thread | None = None
    _webhook_sender: threading.Thread | None = None
    _mailer: threading.Thread | None = None
    link_secret: bytes = field(default=b"", repr=False)  # signing links' HMAC key (settings, or the data dir's)
    # where the store answers: what an evidence worker joins (the secret key kept out of repr)
    s3_endpoint: S3Endpoint | None = field(default=None, repr=False)

    def sources(self, deadline: Deadline | None = None) -> Sources:
        """What the evidence checks read, without the signing key or the checkpointer (until ``deadline``)."""
        with self.db.read_session() as session:
            keys = history(session)
        return Sources(
            self.db,
            self.authoritative,
            self.copies,
            self.key.note_verifier,
            self.settings.vault.log_origin,
            deadline or Deadline(),
            keys=keys,
            checkpoint_trust=checkpoint_trust(self.settings),
        )

    def checkpoint_requests(self, scopes: frozenset[str]) -> CheckpointRequests:
        """Checkpoints on a caller's request: the latest when fresh, a new one only with scope and quota."""
        return CheckpointRequests(
            self.checkpoints,
            self.db,
            scopes,
            self.settings.api.rate_limit_checkpoints,
            self.settings.vault.checkpoint_interval_seconds,
        )

    def custody(self) -> Custody:
        """The unit of work every custody service takes."""
        return Custody(
            self.db,
            self.authoritative,
            self.copies,
            self.settings.vault,
            self.settings.s3.public_endpoint or None,
            self.signer_trust_roots,
            self.settings.pdf,
            ObjectStore(self.s3_client, self.settings.s3.staging_bucket),
            self.settings.edge.spool_memory_bytes,
        )

    def ceremonies(self) -> Ceremonies:
        """The unit of work of the e-sign ceremony's services."""
        return Ceremonies(
            self.custody(),
            self.link_secret,
            self.settings.api.public_url,
            self.document_signer,
            self.settings.ceremony,
            self.settings.vault.tsa_url or None,
        )

    def warm_workers(self) -> None:
        """Start the PDF workers and the evidence workers (each pool's forkserver and one worker, which opens the
        vault) before serving, both at once: the first upload after a restart waited 0.6-0.8 s for them and the
        first evidence read ~2 s (docs/operations.md). A failure is logged and left to the first request, which
        starts them as before."""
        warms: dict[str, Callable[[], None]] = {"PDF": lambda: warm_stampers(self.settings.pdf)}
        if self.s3_endpoint is not None:  # evidence workers join through it (vault/api/evidence.py)
            joining = Joining(self.settings, self.s3_endpoint, self.key.note_verifier.vkey)
            warms["evidence"] = lambda: self.evidence_work.warm(joining)

        def attempt(which: str) -> None:
            try:
                warms[which]()
            except Exception as exc:
                log.warning("could not start the %s workers ahead of requests: %s", which, exc)

        # daemon threads: a stop signal while they start must not wait for them
        threads = [threading.Thread(target=attempt, args=(which,), daemon=True) for which in warms]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def start_checkpointer(self) -> None:
        interval = self.settings.vault.checkpoint_interval_seconds

        def report(org_id: str | None, exc: Exception) -> None:
            code = getattr(exc, "code", type(exc).__name__)
            CHECKPOINT_FAILURES.labels(failure_cause(str(code))).inc()
            log.warning("checkpointing %s failed, will retry: %s: %s", org_id or "(all)", code, exc)

        self._checkpointer = threading.Thread(
            target=self.checkpoints.run_periodically,
            args=(interval, self._stop, report),
            daemon=True,
            name="evault-checkpointer",
        )
        self._checkpointer.start()

    def start_reconciler(self) -> None:
        """Finish or release stale vault-in claims and remove stale copy claims' objects now, then every third of
        the grace period (lease holder only)."""
        grace = timedelta(seconds=self.settings.vault.claim_grace_seconds)

        def reconcile() -> None:
            reconcile_claims(self.custody(), grace)
            reconcile_copy_claims(self.custody(), grace)
            reconcile_ceremonies(self.ceremonies(), timedelta(seconds=self.settings.vault.claim_lease_seconds))

        self._reconciler = self._start_leased("reconciler", max(1.0, grace.total_seconds() / 3), reconcile, True)

    def _start_leased(self, name: str, interval: float, work: Callable[[], object], now: bool) -> threading.Thread:
        """A thread doing ``work`` every ``interval`` seconds while this process holds the lease ``name``.

        The holder renews its lease every round, for the round plus ``EVAULT_LEASE_SECONDS``; the others try
        every round too, so when the holder dies another process takes the job over within that time. The
        jobs lock what they change, so a stalled holder overlapping its successor does no harm, only waste.
        """
        holder = new_holder()
        ttl = timedelta(seconds=interval + self.settings.api.lease_seconds)

        def run() -> None:
            try:
                while now or not self._stop.wait(interval):
                    try:
                        if take_lease(self.db, name, holder, ttl) is not None:
                            work()
                    except Exception as exc:  # keep going after a passing storage or database fault
                        log.warning("%s failed, will retry: %s", name, exc)
                    if now and self._stop.wait(interval):
                        return
            finally:
                try:
                    give_up(self.db, name, holder)
                except Exception as exc:  # the next holder waits out the lease instead
                    log.warning("could not give up the %s lease: %s", name, exc)

        thread = threading.Thread(target=run, daemon=True, name=f"evault-{name}")
        thread.start()
        return thread

    def checkpointer_alive(self) -> bool:
        return self._checkpointer is not None and self._checkpointer.is_alive()

    def store_alive(self) -> bool:
        """The embedded store's process still runs (always true for an external S3)."""
        return self.embedded_s3 is None or self.embedded_s3.alive()

    def start_watchdog(self, on_failure: Callable[[str], None], interval: float = 1.0) -> None:
        """Call ``on_failure`` once if the embedded store's process dies while the vault is open.

        The service then stops with a non-zero exit for its supervisor to restart it whole, instead of
        answering 503 forever; a death during :meth:`close` (ours, or a terminal's Ctrl-C reaching weed
        too) is not a failure.
        """

        def watch() -> None:
            while not self._stop.wait(interval):
                if not self.store_alive():
                    if not self._stop.is_set():
                        log.error("the embedded object store (weed) exited; stopping the service")
                        on_failure("the embedded object store (weed) exited")
                    return

        self._watchdog = threading.Thread(target=watch, daemon=True, name="evault-watchdog")
        self._watchdog.start()

    def start_sweeper(self, interval_seconds: float = 30.0) -> None:
        """Apply deadlines in the background: envelope expiry, idempotency keys and rate counters under the lease
        ``expiry-sweep``, staged uploads under ``staging-sweep``."""
        window = self.settings.api.longest_rate_window()  # an hour's checkpoint quota must last its hour
        self._sweeper = self._start_leased(
            "expiry-sweep", interval_seconds, lambda: sweep_deadlines(self.custody(), window), False
        )
        self._staging_sweeper = self._start_leased(
            "staging-sweep", interval_seconds, lambda: sweep_staged(self.custody()), False
        )

    def start_webhook_sender(self) -> None:
        """Deliver the outbox in the background; across processes only the lease holder sends."""
        sender = Sender(self.db, self.settings.webhooks, self.webhook_box)
        self._webhook_sender = threading.Thread(
            target=sender.run, args=(self._stop,), daemon=True, name="evault-webhook-sender"
        )
        self._webhook_sender.start()

    def start_mailer(self) -> None:
        """Send the ceremony's queued emails in the background (only with EVAULT_SMTP_URL)."""
        if not self.settings.ceremony.smtp_url:
            return
        self._mailer = threading.Thread(
            target=run_mailer, args=(self.ceremonies(), self._stop), daemon=True, name="evault-mailer"
        )
        self._mailer.start()

    def close(self) -> None:
        """Stop in the reverse order of opening: threads, then the database, then the store they use. The PDF
        workers go first and at once: a vetting or stamping still in flight is refused with 503, not waited for."""
        self._stop.set()
        close_pools()
        MAIL_WAKE.set()
        self.evidence_work.close(wait_seconds=EVIDENCE_STOP_SECONDS)
        stop_at = time.monotonic() + THREADS_STOP_SECONDS  # one budget for all, not one each
        for thread in (
            self._watchdog,
            self._checkpointer,
            self._reconciler,
            self._sweeper,
            self._staging_sweeper,
            self._webhook_sender,
            self._mailer,
        ):
            if thread is not None:
                thread.join(timeout=max(0.0, stop_at - time.monotonic()))
        self.db.dispose()
        if self.embedded_s3 is not None:
            self.embedded_s3.stop()


def open_runtime(settings: Settings, join: Joining | None = None) -> Runtime:
    """Start (or connect to) every part and check it; on any failure stop what was started and raise.

    ``join``: a service already open (an evidence worker's runtime, :mod:`vault.evidence_work`): its store and
    its signing key's generation. Nothing is then created, started or migrated: the service did that, and
    checked it."""
    embedded: EmbeddedS3 | None = None
    opening = join is None
    db: Database | None = None
    s3 = settings.s3
    install_outbox()  # every session of this process queues webhooks with the events they announce
    policy = settings.vault
    try:
        # Everything the vault keeps locally is the service's alone, whatever the umask.
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(settings.data_dir, 0o700)
        # Configuration that can be wrong is parsed before anything starts.
        witnesses = [(url, CosignatureVerifier.from_vkey(vkey)) for url, vkey in policy.witnesses]
        tsa_roots = policy.tsa_roots_path.read_bytes() if policy.tsa_url and policy.tsa_roots_path else None
        roots_path = policy.signer_trust_roots_path
        signer_roots = tuple(load_trust_roots(roots_path.read_bytes())) if roots_path is not None else ()
        if join is not None:
            endpoint = join.endpoint
        elif s3.embedded:
            embedded = EmbeddedS3.from_settings(settings)
            endpoint = embedded.start()
        else:
            endpoint = S3Endpoint(s3.endpoint, s3.access_key, s3.secret_key, s3.region)
        credentials = (endpoint.url, endpoint.access_key, endpoint.secret_key, endpoint.region)
        client = make_s3_client(*credentials)
        probe_client = make_s3_client(*credentials, quick=True)
        if s3.create_buckets and opening:
            ensure_bucket(client, s3.authoritative_bucket, object_lock=True)
            ensure_bucket(client, s3.copies_bucket, object_lock=False)
            if s3.staging_bucket != s3.copies_bucket:
                ensure_bucket(client, s3.staging_bucket, object_lock=False)
        try:
            if opening:
                check_worm_bucket(client, s3.authoritative_bucket)
        except BucketNotWorm as exc:
            raise StartupError(
                f"refusing to start: bucket {s3.authoritative_bucket!r} cannot hold authoritative copies: {exc}"
            ) from exc
        db = Database(settings.database_url, timeout=settings.database_timeout)
        if opening:
            db.migrate()
        create_key = opening and "EVAULT_SIGNING_KEY" not in settings.env and not first_key_recorded(db)
        made_key = create_key and not settings.vault.signing_key_path.exists()
        try:
            key = load_or_create_key(settings.vault.signing_key_path, settings.vault.key_name, create=create_key)
            if opening:
                record_first_key(db, key, str(settings.vault.signing_key_path))

            def loader(ref: str) -> Signer:
                return load_signer(ref, settings.vault.pkcs11)

            if join is None:
                key = current_key(db, key, loader)
            else:
                key = key_of_generation(db, key, loader, join.vkey)
        except SigningKeyError as exc:  # missing, or not a usable key file
            raise StartupError(f"refusing to start: {exc}") from exc
        except ValueError as exc:  # not the recorded key
            if made_key:  # another process recorded generation 0 first: the key made here signs nothing
                discard_key_file(settings.vault.signing_key_path)
            raise StartupError(f"refusing to start: signing key {settings.vault.signing_key_path}: {exc}") from exc
        evidence = settings.evidence
        try:
            document_signer = load_or_create_document_signer(
                settings.data_dir,
                evidence.document_signing_key_path,
                evidence.document_signing_cert_path,
                f"{evidence.custodian_name} document signing",
            )
        except (ValueError, RuntimeError) as exc:
            raise StartupError(f"refusing to start: document-signing identity: {exc}") from exc
        try:
            report_key = endorse_report_key(
                settings.vault.report_key_path, key, create=opening and "EVAULT_REPORT_SIGNING_KEY" not in settings.env
            )
        except (OSError, ValueError) as exc:
            raise StartupError(f"refusing to start: report signing key: {exc}") from exc
        try:
            link_secret = settings.ceremony.link_secret or load_or_create_secret(settings.ceremony.link_secret_path)
        except (OSError, ValueError) as exc:
            raise StartupError(f"refusing to start: signing-link secret: {exc}") from exc
        try:
            webhook_key = settings.webhooks.secrets_key or load_or_create_secret(settings.webhooks.secrets_key_path)
            webhook_box = SecretBox(webhook_key)
        except (OSError, ValueError) as exc:
            raise StartupError(f"refusing to start: webhook secrets key: {exc}") from exc
        if opening:  # a joining evidence worker holds what the service it joins was checked for
            try:
                check_held(db, held(document_signer, link_secret, webhook_key))
            except SecretsDiffer as exc:
                raise StartupError(f"refusing to start: {exc}") from exc
            seal_stored_keys(db, webhook_box)
    except BaseException as exc:
        # Nothing started may outlive a failed start: the next start on this data directory must work.
        if db is not None:
            db.dispose()
        if embedded is not None:
            embedded.stop()
        if isinstance(exc, StorageError):
            raise StartupError(f"refusing to start: object storage is not usable: {exc}") from exc
        raise
    authoritative = ObjectStore(client, s3.authoritative_bucket)
    retention = timedelta(days=policy.retention_days)
    cosigners = [WitnessClient(url, verifier, timeout=10) for url, verifier in witnesses]
    timestamper = TimestampClient(policy.tsa_url, tsa_roots, timeout=10) if tsa_roots is not None else None
    # The vault's own seal on completed ceremonies validates as trusted in its own checks.
    signer_roots = (*signer_roots, document_signer.asn1()[0])
    return Runtime(
        settings=settings,
        signer_trust_roots=signer_roots,
        link_secret=link_secret,
        db=db,
        s3_client=client,
        authoritative=authoritative,
        copies=ObjectStore(client, s3.copies_bucket),
        key=key,
        webhook_box=webhook_box,
        checkpoints=CheckpointService(
            db,
            authoritative,
            key.note_signer,
            policy.log_origin,
            retention,
            cosigners,
            timestamper,
            timedelta(seconds=settings.api.lease_seconds),
        ),
        embedded_s3=embedded,
        document_signer=document_signer,
        probe_client=probe_client,
        report_key=report_key,
        evidence_work=EvidenceWork(settings.evidence_work, settings.pdf.worker_nice),
        s3_endpoint=endpoint,
    )
