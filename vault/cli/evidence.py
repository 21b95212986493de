"""``evault cert verify``: check a §9-105 certificate offline, and the checkpoint options it shares with
``evault log verify`` (witness keys with an N-of-M policy, TSA roots) and the frame every offline check
(certificate, receipt, evidence package) runs in.

Exit codes: 0 the certificate is authentic and consistent (its verdict is printed: a valid certificate may
say "fail"), 2 it is invalid, 3 the check could not run (unreadable file or key).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from compliance.certificates.offline_check import VerifiedCertificate, verify_certificate
from compliance.checkpoints.policy import CheckpointTrust
from compliance.errors import EvaultError
from compliance.ledger.key_history import KeySet

EXIT_VALID, EXIT_INVALID, EXIT_COULD_NOT_RUN = 0, 2, 3

Given = tuple[bytes, bytes, CheckpointTrust, KeySet | None]  # what is checked, the trusted PEM, trust, key set
Inputs = TypeVar("Inputs")
Checked = TypeVar("Checked")


def _no_more(_exc: EvaultError) -> Iterator[str]:
    yield from ()


def offline_check(
    command: str,
    read: Callable[[], Inputs],
    check: Callable[[Inputs], Checked],
    report: Callable[[Checked], Iterator[str]],
    explain: Callable[[EvaultError], Iterator[str]] = _no_more,
) -> int:
    """Every offline check answers alike, for the scripts that branch on its exit code: 3 when its files or keys
    cannot be read (``read`` raised OSError), 2 with the failure's code when the evidence fails (``check`` raised
    EvaultError; ``explain`` adds lines), else 0 and what ``report`` says was proven."""
    try:
        inputs = read()
    except OSError as exc:
        print(f"evault {command}: could not run: {exc}", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    try:
        checked = check(inputs)
    except EvaultError as exc:
        print(f"INVALID: {exc.code}: {exc.message}", file=sys.stderr)
        for line in explain(exc):
            print(line, file=sys.stderr)
        return EXIT_INVALID
    for line in report(checked):
        print(line)
    return EXIT_VALID


def add_trust_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--witness-key", action="append", default=[], help="a witness's vkey (repeat for each)")
    parser.add_argument("--witnesses-required", type=int, help="how many of the witness keys must cosign (default all)")
    parser.add_argument("--tsa-roots", help="PEM roots the checkpoint's RFC 3161 timestamp must chain to")
    add_keys_option(parser)


def add_keys_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keys",
        help="the vault's key set (/.well-known/evault/keys saved to a file): rotations and revocations, each "
        "checked from --public-key",
    )


def keys_from(args: argparse.Namespace) -> KeySet | None:
    return KeySet.parse(Path(args.keys).read_bytes()) if args.keys else None


def trust_from(args: argparse.Namespace) -> CheckpointTrust:
    return CheckpointTrust(
        tuple(args.witness_key),
        args.witnesses_required,
        Path(args.tsa_roots).read_bytes() if args.tsa_roots else None,
    )


def _summary(certificate: dict[str, Any]) -> list[str]:
    envelope, conditions = certificate["envelope"], certificate["conditions"]
    lines = [f"envelope {envelope['id']} ({envelope['title']}), issued {certificate['issued_at']}"]
    for doc in (certificate.get("authoritative_copy") or {}).get("documents", []):
        lines.append(
            f"  document {doc['id']} sha256 {doc['sha256']} version {doc['version_id']} lock {doc['lock_mode']}"
        )
    assignee = certificate.get("assignee_of_record") or {}
    lines.append(f"  assignee of record: {assignee.get('name')}; custodian: {certificate['custodian']['name']}")
    lines.append(
        f"  copies issued: {len(certificate['copies'])}; vault-out: {certificate.get('vault_out') is not None}"
    )
    for result in conditions["conditions"]:
        lines.append(f"  ({result['condition']}) {result['status']}: {result['title']}")
    lines.append(f"verdict: {conditions['verdict']}")
    return lines


def _certificate_report(result: VerifiedCertificate) -> Iterator[str]:
    done = result.bundle.completeness
    yield f"OK: signature valid; {len(result.bundle.events)} events proven in {result.bundle.checkpoint.origin} "
    yield f"size {result.bundle.checkpoint.size}; complete at head {done.head_seq if done else None}"
    yield from [*result.trust, *_summary(result.certificate)]


def cert_verify(args: argparse.Namespace) -> int:
    def read() -> Given:
        return (
            Path(args.certificate).read_bytes(),
            Path(args.public_key).read_bytes(),
            trust_from(args),
            keys_from(args),
        )

    return offline_check("cert verify", read, lambda given: verify_certificate(*given), _certificate_report)


def add_cert_commands(commands: Any) -> None:
    cert = commands.add_parser("cert", help="check §9-105 certificates offline").add_subparsers(
        dest="cert_command", required=True
    )
    verify = cert.add_parser("verify", help="verify an evault-certificate/v1 with only the vault's public key")
    verify.add_argument("certificate")
    verify.add_argument("--public-key", required=True, help="the vault's PEM public key you trust")
    add_trust_options(verify)
    verify.set_defaults(run=cert_verify)
