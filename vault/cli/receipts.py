"""``evault receipt verify``: check a signed receipt offline, with only the vault's public key.

Without ``--public-key`` the key is ``EVAULT_PUBLIC_KEY``, else the public half beside this vault's configured
signing key (an operator on the vault's own machine); an auditor passes the key they pinned.
Exit codes: 0 the receipt is authentic and every field is what the log records, 2 it is not, 3 the check could
not run (unreadable file or key). ``--against BUNDLE`` also checks, from a later proof bundle of the envelope,
that its release is still the envelope's head (``Receipt.ReleaseSuperseded`` otherwise); add
``--consistency-proof`` to prove the bundle's checkpoint extends the receipt's.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from compliance.checkpoints.policy import CheckpointTrust
from compliance.errors import EvaultError
from compliance.ledger.key_history import KeySet
from compliance.ledger.vault_key import public_key_path
from compliance.receipts.after_release import StillReleased, check_still_released
from compliance.receipts.offline_check import VerifiedReceipt, verify_receipt
from storage.settings import Settings, SettingsError
from vault.cli.evidence import add_trust_options, keys_from, offline_check, trust_from

ReceiptGiven = tuple[bytes, bytes, CheckpointTrust, KeySet | None, bytes | None, str | None]  # + against, proof
Checked = tuple[VerifiedReceipt, StillReleased | None]


def trusted_key(given: str | None) -> bytes:
    """The PEM the check trusts: ``--public-key``, ``EVAULT_PUBLIC_KEY``, or this vault's own public key."""
    if given:
        return Path(given).read_bytes()
    configured = os.environ.get("EVAULT_PUBLIC_KEY")
    if configured:
        return Path(configured).read_bytes()
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise OSError(f"no --public-key given and the vault's settings do not load: {exc}") from None
    return public_key_path(settings.vault.signing_key_path).read_bytes()


def _check(given: ReceiptGiven) -> Checked:
    text, pem, trust, keys, against, proof = given
    result = verify_receipt(text, pem, trust, keys)
    still = None
    if against is not None:
        still = check_still_released(result, against, pem, consistency_proof=proof, keys=keys, trust=trust)
    return result, still


def _followed(exc: EvaultError) -> Iterator[str]:
    if exc.details.get("followed"):
        yield f"  events after the release: {', '.join(map(str, exc.details['followed']))}"


def _report(checked: Checked) -> Iterator[str]:
    result, still = checked
    receipt: dict[str, Any] = result.receipt
    yield f"OK: {result.kind} receipt for envelope {receipt['envelope_id']}, issued {receipt['issued_at']}"
    for role, entry in result.events.items():
        yield f"  {role}: {entry['type']} at {entry['log']} leaf {entry['index']} ({entry['time']})"
    for origin, checkpoint in result.checkpoints.items():
        yield f"  checkpoint {origin} size {checkpoint.size}"
    for name, value in result.fields.items():
        yield f"  {name}: {json.dumps(value, sort_keys=True)}"
    yield from result.trust
    for org in result.countersigned_by:
        yield f"  countersigned by {org}: its signature over the receipt's statement verifies"
    if still is not None:
        where = f"{still.checkpoint.origin} size {still.checkpoint.size}"
        yield f"still released: the release is the envelope's head at checkpoint {where}; nothing followed it"
        if still.extends is not None:
            yield f"  that checkpoint extends the receipt's (size {still.extends.size}): consistency proven"


def receipt_verify(args: argparse.Namespace) -> int:
    def read() -> ReceiptGiven:
        return (
            Path(args.file).read_bytes(),
            trusted_key(args.public_key),
            trust_from(args),
            keys_from(args),
            Path(args.against).read_bytes() if args.against else None,
            Path(args.consistency_proof).read_text() if args.consistency_proof else None,
        )

    return offline_check("receipt verify", read, _check, _report, explain=_followed)


def add_commands(commands: Any) -> None:
    receipt = commands.add_parser("receipt", help="check signed receipts offline").add_subparsers(
        dest="receipt_command", required=True
    )
    verify = receipt.add_parser("verify", help="verify an evault-receipt/v1 with only the vault's public key")
    verify.add_argument("file")
    verify.add_argument("--public-key", help="the vault's PEM public key you trust (default: EVAULT_PUBLIC_KEY)")
    verify.add_argument(
        "--against",
        metavar="BUNDLE",
        help="a later proof bundle of the envelope (GET /envelopes/{id}/proof): check the release is still its head",
    )
    verify.add_argument(
        "--consistency-proof",
        metavar="PROOF",
        help="with --against: the consistency proof from the receipt's checkpoint to the bundle's "
        "(GET /log/proof/consistency)",
    )
    add_trust_options(verify)
    verify.set_defaults(run=receipt_verify)
