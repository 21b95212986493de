"""``evault``: the command line. Every subcommand calls the same services as the API.

``evault serve`` runs the service (embedded defaults unless configured); ``evault log verify`` and
``evault log consistency`` check a proof bundle or two checkpoints offline, with nothing but files and a key.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from compliance.proof_bundle import verify_bundle
from compliance.trusted_checkpoint import check_consistency
from storage.settings import Settings, SettingsError
from vault.errors import EvaultError
from vault.runtime import StartupError
from vault.signing import SigningKeyError


def _serve(_: argparse.Namespace) -> int:
    import uvicorn

    from vault.api.app import create_app
    from vault.runtime import open_vault
    from vault.tenancy import bootstrap

    settings = Settings.from_env()
    print(f"evault: opening the vault in {settings.data_dir} ...", flush=True)
    vault = open_vault(settings)
    try:
        with vault.db.session() as session:
            first = bootstrap(session)
        base = f"{settings.api.public_url}/api/v2/partner"
        print(f"evault: serving {base}  (OpenAPI: {settings.api.public_url}/api/v2/openapi.json)", flush=True)
        if first is not None:
            org, raw_key = first
            print(
                f"evault: created organisation {org.id} with an all-scopes API key (shown only now):",
                flush=True,
            )
            print(f"    X-API-Key: {raw_key}", flush=True)
            print(
                f"    try: curl -s -H 'X-API-Key: {raw_key}' -H 'Content-Type: application/json' "
                f'-d \'{{"kind":"paper","title":"Loan 1","secured_party":{{"name":"Bank"}}}}\' '
                f"{base}/envelopes",
                flush=True,
            )
        vault.start_checkpointer()
        uvicorn.run(create_app(vault), host=settings.api.host, port=settings.api.port, log_level="info")
    finally:
        vault.close()
    return 0


def _log_verify(args: argparse.Namespace) -> int:
    result = verify_bundle(Path(args.bundle).read_bytes(), Path(args.public_key).read_bytes(), args.origin)
    print(
        f"OK: {len(result.events)} events of envelope {result.envelope_id} are in checkpoint "
        f"{result.checkpoint.origin} size {result.checkpoint.size}, and their chain is unbroken"
    )
    return 0


def _log_consistency(args: argparse.Namespace) -> int:
    old, new = check_consistency(
        Path(args.old).read_text(),
        Path(args.new).read_text(),
        Path(args.proof).read_text(),
        Path(args.public_key).read_bytes(),
        Path(args.state) if args.state else None,
    )
    print(f"OK: {new.origin} size {new.size} extends size {old.size}")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="evault", description="E-vault and compliance archive")
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the API (embedded SeaweedFS + SQLite unless configured)").set_defaults(
        run=_serve
    )
    log = commands.add_parser("log", help="check transparency-log evidence offline").add_subparsers(
        dest="log_command", required=True
    )
    verify = log.add_parser("verify", help="verify an envelope proof bundle")
    verify.add_argument("bundle")
    verify.add_argument("--public-key", required=True, help="the vault's PEM public key you trust")
    verify.add_argument("--origin", help="the log origin you expect (default: the bundle's)")
    verify.set_defaults(run=_log_verify)
    consistency = log.add_parser("consistency", help="check that checkpoint NEW extends checkpoint OLD")
    consistency.add_argument("old")
    consistency.add_argument("new")
    consistency.add_argument("--proof", required=True, help="consistency proof JSON from /log/proof/consistency")
    consistency.add_argument("--public-key", required=True)
    consistency.add_argument("--state", help="directory keeping the last accepted checkpoint and any evidence")
    consistency.set_defaults(run=_log_consistency)
    return root


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except (EvaultError, SettingsError, StartupError, SigningKeyError, OSError) as exc:
        label = getattr(exc, "code", type(exc).__name__)
        print(f"evault: {label}: {exc}", file=sys.stderr)
        details = getattr(exc, "details", None)
        if details:
            print(json.dumps(details, indent=2, default=str), file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
