"""The vault's public keys in one document: what ``/.well-known/evault/keys`` serves and an evidence package
carries as ``keys/keys.json`` (the signing key's generations and their chain, the document-signing
certificate, the report-signing key and its endorsement)."""

from __future__ import annotations

from typing import Any

from compliance.ledger.key_ring import key_set
from vault.runtime import Runtime


def document_signing_keys(runtime: Runtime) -> list[dict[str, Any]]:
    """The published half of the document-signing identity, for ``/.well-known/evault/keys``."""
    signer = runtime.document_signer
    if signer is None:
        return []
    return [{"use": "document-signing", "algorithm": "ECDSA-P256", "pem": signer.certificate_pem()}]


def keys_document(runtime: Runtime) -> dict[str, Any]:
    """What ``/.well-known/evault/keys`` serves (and an evidence package carries as ``keys/keys.json``)."""
    with runtime.db.read_session() as session:
        chain = key_set(session)
    return {
        "keys": [
            *(
                {
                    "use": "checkpoint",
                    "algorithm": "Ed25519",
                    "vkey": generation["vkey"],
                    "pem": generation["pem"],
                    "log_origin_prefix": runtime.settings.vault.log_origin,
                    "generation": generation["generation"],
                    "current": generation["vkey"] == runtime.key.note_verifier.vkey,
                    "valid_from": generation["valid_from"],
                    "valid_until": generation["valid_until"],
                    "compromised_since": generation["compromised_since"],
                }
                for generation in reversed(chain["generations"])
            ),
            *document_signing_keys(runtime),
            *(
                [
                    {
                        "use": "report-signing",
                        "algorithm": "Ed25519",
                        "pem": runtime.report_key.public_pem,
                        # The vault key's signature over "evault report-signing key v1\n" + the raw key.
                        "endorsement": runtime.report_key.endorsement,
                    }
                ]
                if runtime.report_key is not None
                else []
            ),
        ],
        # The rotation and revocation statements: save this document and pass it as `--keys` offline.
        "signing_key_chain": chain,
    }
