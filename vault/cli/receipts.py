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
import sys
from pathlib import Path
from typing import Any

from compliance.errors import EvaultError
from compliance.ledger.vault_key import public_key_path
from compliance.receipts.after_release import check_still_released
from compliance.receipts.offline_check import verify_receipt
from storage.settings import Settings, SettingsError
from vault.cli.evidence import EXIT_COULD_NOT_RUN, EXIT_INVALID, EXIT_VALID, add_trust_options, keys_from, trust_from


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


def receipt_verify(args: argparse.Namespace) -> int:
    try:
        text = Path(args.file).read_bytes()
        pem = trusted_key(args.public_key)
        trust = trust_from(args)
        keys = keys_from(args)
        against = Path(args.against).read_bytes() if args.against else None
        proof = Path(args.consistency_proof).read_text() if args.consistency_proof else None
    except OSError as exc:
        print(f"evault receipt verify: could not run: {exc}", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    try:
        result = verify_receipt(text, pem, trust, keys)
        still = None
        if against is not None:
            still = check_still_released(result, against, pem, consistency_proof=proof, keys=keys, trust=trust)
    except EvaultError as exc:
        print(f"INVALID: {exc.code}: {exc.message}", file=sys.stderr)
        if exc.details.get("followed"):
            print(f"  events after the release: {', '.join(map(str, exc.details['followed']))}", file=sys.stderr)
        return EXIT_INVALID
    receipt: dict[str, Any] = result.receipt
    print(f"OK: {result.kind} receipt for envelope {receipt['envelope_id']}, issued {receipt['issued_at']}")
    for role, entry in result.events.items():
        print(f"  {role}: {entry['type']} at {entry['log']} leaf {entry['index']} ({entry['time']})")
    for origin, checkpoint in result.checkpoints.items():
        print(f"  checkpoint {origin} size {checkpoint.size}")
    for name, value in result.fields.items():
        print(f"  {name}: {json.dumps(value, sort_keys=True)}")
    for line in result.trust:
        print(line)
    for org in result.countersigned_by:
        print(f"  countersigned by {org}: its signature over the receipt's statement verifies")
    if still is not None:
        where = f"{still.checkpoint.origin} size {still.checkpoint.size}"
        print(f"still released: the release is the envelope's head at checkpoint {where}; nothing followed it")
        if still.extends is not None:
            print(f"  that checkpoint extends the receipt's (size {still.extends.size}): consistency proven")
    return EXIT_VALID


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
