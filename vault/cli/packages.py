"""``evault evidence verify``: check an evidence package offline, with only the vault's public key.

Exit codes: 0 every file is what the signed manifest names and the parts agree, 2 they do not (any altered
byte), 3 the check could not run (unreadable file or key). The key defaults as for ``evault receipt verify``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from compliance.errors import EvaultError
from compliance.evidence_package.offline_check import verify_package
from vault.cli.evidence import EXIT_COULD_NOT_RUN, EXIT_INVALID, EXIT_VALID, add_trust_options, keys_from, trust_from
from vault.cli.receipts import trusted_key


def evidence_verify(args: argparse.Namespace) -> int:
    try:
        data = Path(args.file).read_bytes()
        pem = trusted_key(args.public_key)
        trust = trust_from(args)
        keys = keys_from(args)
    except OSError as exc:
        print(f"evault evidence verify: could not run: {exc}", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    try:
        result = verify_package(data, pem, trust, keys)
    except EvaultError as exc:
        print(f"INVALID: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_INVALID
    manifest = result.manifest
    certificate = result.certificate.certificate
    print(f"OK: evidence package of envelope {manifest['envelope_id']}, created {manifest['created_at']}")
    print(f"  {len(manifest['files'])} files match the signed manifest")
    for path in result.documents:
        print(f"  authoritative document {path}: the vaulted bytes")
    bundle = result.bundle
    print(f"  {len(bundle.events)} events proven in {bundle.checkpoint.origin} size {bundle.checkpoint.size}, complete")
    for path, receipt in result.receipts.items():
        print(f"  {path}: a valid {receipt.kind} receipt")
    print(f"  certificate verdict: {certificate['conditions']['verdict']}")
    return EXIT_VALID


def add_commands(commands: Any) -> None:
    evidence = commands.add_parser("evidence", help="check evidence packages offline").add_subparsers(
        dest="evidence_command", required=True
    )
    verify = evidence.add_parser("verify", help="verify an evault-evidence-package/v1 zip with the vault's key")
    verify.add_argument("file")
    verify.add_argument("--public-key", help="the vault's PEM public key you trust (default: EVAULT_PUBLIC_KEY)")
    add_trust_options(verify)
    verify.set_defaults(run=evidence_verify)
