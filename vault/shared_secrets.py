"""Secrets every process of one vault must hold alike, checked at start against what the first one recorded.

Workers and replicas share one database and one bucket, but each reads its secrets from its own environment
and data directory, and on the embedded default a missing one is made there on first start. A replica given an
empty data directory would then seal certificates with a document-signing identity nobody pinned, mint
signing links the other replicas refuse, and seal webhook keys the others cannot open. The database keeps a
fingerprint of each (never the secret): the first process to start records it, and one whose fingerprint
differs is refused with what to set. The vault's checkpoint key is held to its recorded generations instead
(:mod:`compliance.ledger.key_ring`).

Changing a secret on purpose is ``evault shared-secrets forget NAME`` once every process has the new one,
then a restart of each: the first to start records the new fingerprint. (The webhook secrets key is the
exception: what it sealed opens with it alone, so changing it means every webhook's key is set anew.)
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import serialization
from sqlalchemy import delete
from sqlmodel import col, select

from compliance.signatures.document_identity import DocumentSigner
from storage.db import Database, insert_if_absent
from storage.ids import utcnow
from storage.models import SharedSecret

DOCUMENT_SIGNING = "document-signing"
SIGNING_LINK = "signing-link"
WEBHOOK_SECRETS = "webhook-secrets"
# What sets each one, named in the refusal.
SETTINGS = {
    DOCUMENT_SIGNING: "EVAULT_DOCUMENT_SIGNING_KEY and EVAULT_DOCUMENT_SIGNING_CERT",
    SIGNING_LINK: "EVAULT_SIGNING_LINK_SECRET",
    WEBHOOK_SECRETS: "EVAULT_WEBHOOK_SECRETS_KEY",
}
_LINK_LABEL = b"evault signing-link secret fingerprint v1"
_WEBHOOK_LABEL = b"evault webhook-secrets key fingerprint v1"


class SecretsDiffer(Exception):
    """This process holds a secret other than the one the vault's processes recorded."""


def held(signer: DocumentSigner, link_secret: bytes, webhook_key: bytes) -> dict[str, str]:
    """The fingerprints of what this process holds, by name: the certificate's SHA-256 (it is published anyway);
    for the link secret and the webhook secrets key an HMAC keyed by each, which tells the secret apart from
    another without revealing it."""
    der = signer.certificate.public_bytes(serialization.Encoding.DER)
    return {
        DOCUMENT_SIGNING: hashlib.sha256(der).hexdigest(),
        SIGNING_LINK: hmac.new(link_secret, _LINK_LABEL, hashlib.sha256).hexdigest(),
        WEBHOOK_SECRETS: hmac.new(webhook_key, _WEBHOOK_LABEL, hashlib.sha256).hexdigest(),
    }


def check_held(db: Database, mine: dict[str, str]) -> None:
    """Record what is not recorded yet, in one transaction, and refuse what differs from the record."""
    with db.session() as session:
        for name, fingerprint in mine.items():
            insert_if_absent(session, SharedSecret(name=name, fingerprint=fingerprint, recorded_at=utcnow()))
        recorded = {row.name: row for row in session.exec(select(SharedSecret))}
    differ = [name for name, fingerprint in mine.items() if recorded[name].fingerprint != fingerprint]
    if differ:
        raise SecretsDiffer(
            "; ".join(
                f"the {name} secret is not the one this vault's processes hold (fingerprint {mine[name][:16]}..., "
                f"recorded {recorded[name].fingerprint[:16]}... on {recorded[name].recorded_at:%Y-%m-%d}): give every "
                f"process the same {SETTINGS[name]}, or, to change it on purpose, run "
                f"`evault shared-secrets forget {name}` once every process has the new one"
                for name in differ
            )
        )


def recorded_secrets(db: Database) -> list[SharedSecret]:
    with db.read_session() as session:
        return list(session.exec(select(SharedSecret).order_by(col(SharedSecret.name))))


def forget(db: Database, name: str) -> bool:
    """Drop one recorded fingerprint, so that the next process to start records its own; whether there was one."""
    with db.session() as session:
        statement = delete(SharedSecret).where(col(SharedSecret.name) == name)
        return bool(session.connection().execute(statement).rowcount)
