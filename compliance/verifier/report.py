"""The verifier's signed report: JSON, a detached Ed25519 signature over its RFC 8785 form, made with a
report-signing key of its own.

The report key is endorsed by the vault key (a signature over ``evault report-signing key v1\\n`` + the raw
public key), made by the service at every start and published at ``/.well-known/evault/keys``. So the
checkpoint-signing key never leaves the service, no verifier machine needs it, and anyone holding only the
vault's public key checks a report offline: the endorsement first, then the report's signature.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from compliance import strict_json
from compliance.errors import EvaultError
from compliance.ledger.key_history import KeySet
from compliance.ledger.log_error import LogError
from compliance.ledger.note import raw_public_key
from compliance.ledger.signer import create_key_file
from compliance.ledger.vault_key import VaultKey, load_public_key
from storage.ids import iso

FORMAT = "evault-verify-report/v1"
ENDORSEMENT_CONTEXT = b"evault report-signing key v1\n"


class ReportError(EvaultError):
    """A report that does not verify: ``Report.Malformed``, ``Report.NotEndorsed`` or ``Report.BadSignature``."""

    category = "invalid"


@dataclass(frozen=True)
class ReportKey:
    """The report-signing key's public half and the vault key's endorsement of it."""

    public_pem: str
    endorsement: str  # base64 Ed25519 signature by the vault key


def endorsement_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".endorsement")


def _public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _load_private(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def endorse_report_key(path: Path, vault_key: VaultKey, *, create: bool) -> ReportKey:
    """At service start: make the report key if missing (when allowed), endorse it with the vault key, and write
    the endorsement beside it (an Ed25519 signature is deterministic: rewriting it is idempotent)."""
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"report signing key {path} does not exist (EVAULT_REPORT_SIGNING_KEY)")
        create_key_file(path)
    public = _load_private(path).public_key()
    endorsement = base64.b64encode(vault_key.sign(ENDORSEMENT_CONTEXT + raw_public_key(public))).decode()
    target = endorsement_path(path)
    if not target.exists() or target.read_text().strip() != endorsement:
        target.write_text(endorsement + "\n")
    return ReportKey(_public_pem(public), endorsement)


class ReportSigner:
    """What the verifier loads: the report key and its endorsement, nothing of the vault key."""

    def __init__(self, path: Path) -> None:
        self._key = _load_private(path)
        self.endorsement = endorsement_path(path).read_text().strip()
        self.public_pem = _public_pem(self._key.public_key())

    def sign(self, report: dict[str, Any]) -> dict[str, Any]:
        signature = self._key.sign(rfc8785.dumps(report))
        return {
            "format": FORMAT,
            "report": report,
            "signature": {
                "algorithm": "Ed25519",
                "value": base64.b64encode(signature).decode(),
                "report_key": {"pem": self.public_pem, "endorsement": self.endorsement},
            },
        }


def _b64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(value).encode(), validate=True)
    except (binascii.Error, ValueError):
        raise ReportError("Report.Malformed", f"{what} is not base64") from None


def _verifies(vault: Ed25519PublicKey, endorsement: bytes, raw_report_key: bytes) -> bool:
    try:
        vault.verify(endorsement, ENDORSEMENT_CONTEXT + raw_report_key)
    except InvalidSignature:
        return False
    return True


def verify_report(data: bytes, vault_public_pem: bytes, keys: KeySet | None = None) -> dict[str, Any]:
    """The report inside ``data`` if a vault key endorses its key and that key signed it; raise otherwise.

    ``vault_public_pem`` is the first key the auditor trusts; ``keys`` (the vault's key set) adds the keys that
    follow from it by rotation. An endorsement by a since-revoked key is ``Report.KeyCompromised``: nothing
    independent dates it."""
    try:
        signed = strict_json.loads(data)
        report, signature = signed["report"], signed["signature"]
        report_key = signature["report_key"]
        if signed.get("format") != FORMAT or signature.get("algorithm") != "Ed25519" or not isinstance(report, dict):
            raise ValueError("not an evault verify report")
        key = load_public_key(str(report_key["pem"]).encode())
        history = (keys or KeySet()).history(load_public_key(vault_public_pem))
    except (ValueError, KeyError, TypeError) as exc:
        raise ReportError("Report.Malformed", f"not a signed evault report: {exc}") from None
    except LogError as exc:
        raise ReportError("Report.Malformed", f"the key set does not follow from your key: {exc.message}") from None
    endorsement = _b64(report_key["endorsement"], "endorsement")
    endorser = next((p for p in history.periods if _verifies(p.public_key, endorsement, raw_public_key(key))), None)
    if endorser is None:
        raise ReportError(
            "Report.NotEndorsed", "the vault key did not endorse the key that signed this report"
        ) from None
    if endorser.compromised_since is not None:
        raise ReportError(
            "Report.KeyCompromised",
            f"the report key is endorsed by a vault key compromised since {iso(endorser.compromised_since)}",
            generation=endorser.generation,
        )
    try:
        key.verify(_b64(signature["value"], "signature"), rfc8785.dumps(report))
    except InvalidSignature:
        raise ReportError("Report.BadSignature", "the report's signature does not verify: it was changed") from None
    return report
