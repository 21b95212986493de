"""The unit of work a custody service takes: the database and the stores it touches, and the custody policy.

Services take this rather than the whole runtime, so what a function can reach is visible in its signature and
the runtime (checkpointer, embedded server, signing key) stays with the composition root and the outer ring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from asn1crypto import x509 as asn1_x509
from sqlmodel import Session

from storage.db import Database
from storage.models import Envelope
from storage.object_store import ObjectStore
from storage.settings import PdfSettings, VaultSettings

# Called by a service inside the transaction of its change, after the change, with the envelope it changed:
# the outer ring records the request's idempotency record there, so it commits with the change or not at all.
OnCommit = Callable[[Session, Envelope], None]


@dataclass(frozen=True)
class Custody:
    db: Database
    authoritative: ObjectStore
    copies: ObjectStore
    policy: VaultSettings
    public_s3_endpoint: str | None = None
    signer_trust_roots: tuple[asn1_x509.Certificate, ...] = ()  # parsed once, at start-up
    pdf: PdfSettings = field(default_factory=PdfSettings)  # the vetting and stamping budget
    staging: ObjectStore | None = None  # staged uploads; None: the copies bucket
    spool_memory_bytes: int = 1024 * 1024  # of a document read back for vault-in, kept in memory (rest on disk)

    @property
    def staging_store(self) -> ObjectStore:
        return self.staging or self.copies
