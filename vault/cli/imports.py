"""``evault import PACKAGE --org ORG --trusted-key PEM``: receive a record another vault released to this one.

It attaches to the running vault as ``evault dispose`` does (never starting or migrating one), checks the export
package against the sending vault's key(s) you trust, and only then writes (:mod:`vault.imports`). A refusal
prints its named reason (``Import.BadSignature``, ``Import.HashMismatch``, ...) and exits 1, having written
nothing. This vault's id is ``EVAULT_CUSTODIAN_ID``: the sender's vault-out must name it as
``transferee.vault_id``. See docs/vault-transfer.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from storage.settings import Settings


def _import(args: argparse.Namespace) -> int:
    from compliance.attach import attach_sources
    from compliance.evidence_package.import_check import verify_export
    from compliance.signatures.pdf_validation import load_trust_roots
    from vault.custody import Custody
    from vault.imports import import_package
    from vault.webhooks.outbox import install_outbox

    data = Path(args.package).read_bytes()
    trusted = [Path(path).read_bytes() for path in args.trusted_key]
    install_outbox()  # the envelope.imported event reaches the organisation's webhooks
    settings = Settings.from_env()
    policy = settings.vault
    roots_path = policy.signer_trust_roots_path
    roots = load_trust_roots(roots_path.read_bytes()) if roots_path is not None else []
    export = verify_export(data, trusted, settings.evidence.custodian_id, roots, policy.require_trusted_signers)
    sources = attach_sources(settings)
    try:
        custody = Custody(sources.db, sources.authoritative, sources.copies, policy, signer_trust_roots=tuple(roots))
        envelope = import_package(custody, args.org, export)
    finally:
        sources.db.dispose()
    answer = {"envelope_id": envelope.id, "org_id": envelope.org_id, "imported_from": export.origin}
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        origin = export.origin
        print(f"imported {origin['envelope_id']} from {origin['log_origin']} as {envelope.id} of {envelope.org_id}")
        print(f"  release at leaf {origin['release']['leaf_index']}, receipt sha256 {origin['release_receipt_sha256']}")
        print(f"  checkpoint size {origin['checkpoint']['size']}, signed by {origin['key_id']}")
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = commands.add_parser("import", help="import another vault's export package after checking every part")
    sub.add_argument("package", help="the export package (GET /envelopes/{id}/export-package at the sending vault)")
    sub.add_argument("--org", required=True, help="the organisation of this vault that receives the record")
    sub.add_argument(
        "--trusted-key",
        action="append",
        default=[],
        help="a PEM public key you trust for the sending vault (repeatable); the package must be signed by one",
    )
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.set_defaults(run=_import)
