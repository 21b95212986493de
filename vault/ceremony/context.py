"""What the ceremony's services take: the custody unit of work plus the link secret, the public URL, the sealing
identity and the ceremony's settings (built by the runtime, the composition root)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from compliance.signatures.document_identity import DocumentSigner
from storage.ids import as_utc
from storage.models import Ceremony, Envelope
from storage.settings import CeremonySettings
from vault.custody import Custody


@dataclass(frozen=True)
class Ceremonies:
    custody: Custody
    link_secret: bytes
    public_url: str  # links are ``{public_url}/sign/<token>``
    signer: DocumentSigner | None  # the vault's document-signing identity: seals completed envelopes
    settings: CeremonySettings
    tsa_url: str | None = None  # with a TSA, the seal carries an RFC 3161 signature timestamp

    def link_url(self, token: str) -> str:
        return f"{self.public_url.rstrip('/')}/sign/{token}"

    def links_expire(self, envelope: Envelope, ceremony: Ceremony) -> datetime | None:
        """Links live ``link_ttl_seconds`` after send, and never past the envelope's own deadline."""
        if ceremony.sent_at is None:
            return None
        ends = as_utc(ceremony.sent_at) + timedelta(seconds=self.settings.link_ttl_seconds)
        return min(ends, as_utc(envelope.expires_at)) if envelope.expires_at else ends
