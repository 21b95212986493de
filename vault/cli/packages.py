"""``evault evidence verify``: check an evidence package offline, with only the vault's public key.

Exit codes: 0 every file is what the signed manifest names and the parts agree, 2 they do not (any altered
byte), 3 the check could not run (unreadable file or key). The key defaults as for ``evault receipt verify``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from compliance.evidence_package.offline_check import VerifiedPackage, verify_package
from vault.cli.evidence import Given, add_trust_options, keys_from, offline_check, trust_from
from vault.cli.receipts import trusted_key


def _package_report(result: VerifiedPackage) -> Iterator[str]:
    manifest = result.manifest
    certificate = result.certificate.certificate
    yield f"OK: evidence package of envelope {manifest['envelope_id']}, created {manifest['created_at']}"
    yield f"  {len(manifest['files'])} files match the signed manifest"
    for path in result.documents:
        yield f"  authoritative document {path}: the vaulted bytes"
    bundle = result.bundle
    yield f"  {len(bundle.events)} events proven in {bundle.checkpoint.origin} size {bundle.checkpoint.size}, complete"
    for path, receipt in result.receipts.items():
        yield f"  {path}: a valid {receipt.kind} receipt"
    yield f"  certificate verdict: {certificate['conditions']['verdict']}"


def evidence_verify(args: argparse.Namespace) -> int:
    def read() -> Given:
        return Path(args.file).read_bytes(), trusted_key(args.public_key), trust_from(args), keys_from(args)

    return offline_check("evidence verify", read, lambda given: verify_package(*given), _package_report)


def add_commands(commands: Any) -> None:
    evidence = commands.add_parser("evidence", help="check evidence packages offline").add_subparsers(
        dest="evidence_command", required=True
    )
    verify = evidence.add_parser("verify", help="verify an evault-evidence-package/v1 zip with the vault's key")
    verify.add_argument("file")
    verify.add_argument("--public-key", help="the vault's PEM public key you trust (default: EVAULT_PUBLIC_KEY)")
    add_trust_options(verify)
    verify.set_defaults(run=evidence_verify)
