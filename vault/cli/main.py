"""``evault``: the command line. Every subcommand calls the same services as the API.

``evault serve`` runs the service (embedded defaults unless configured); ``evault log verify`` and
``evault log consistency`` check a proof bundle or two checkpoints offline, with nothing but files and a key.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import timedelta
from pathlib import Path

from compliance.errors import EvaultError
from compliance.proof_bundle import verify_bundle
from compliance.signing import SigningKeyError
from compliance.trusted_checkpoint import check_consistency
from storage.settings import Settings, SettingsError
from vault.runtime import StartupError


def _serve(_: argparse.Namespace) -> int:
    import uvicorn

    from vault.api.app import create_app
    from vault.runtime import open_runtime
    from vault.tenancy import bootstrap

    settings = Settings.from_env()
    print(f"evault: opening the vault in {settings.data_dir} ...", flush=True)
    runtime = open_runtime(settings)
    try:
        with runtime.db.session() as session:
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
        runtime.start_checkpointer()
        runtime.start_reconciler()
        runtime.start_sweeper()
        app = create_app(runtime)
        # uvicorn re-raises SIGTERM after its graceful shutdown, so ``finally`` never runs: close on shutdown.
        app.on_shutdown.append(runtime.close)
        uvicorn.run(app, host=settings.api.host, port=settings.api.port, log_level="info")
    finally:
        runtime.close()
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


def _verify(args: argparse.Namespace) -> int:
    from compliance.integrity import verify_vault
    from vault.runtime import open_runtime

    runtime = open_runtime(Settings.from_env())
    try:
        report = verify_vault(runtime.sources(), timedelta(seconds=runtime.settings.vault.claim_grace_seconds))
    finally:
        runtime.close()
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(report, indent=2))
    print(
        f"{report['documents']} documents, {report['organisations']} logs: "
        f"{'clean' if report['clean'] else str(len(report['findings'])) + ' findings'}"
    )
    for finding in report["findings"]:
        print(f"  {finding['code']}: {finding['message']} {json.dumps(finding['details'], default=str)}")
    return 0 if report["clean"] else 2


def _witness(args: argparse.Namespace) -> int:
    from compliance.witness_app import serve_witness

    serve_witness(Path(args.state), Path(args.key), args.log_key, args.host, args.port, name=args.name)
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="evault", description="E-vault and compliance archive")
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the API (embedded SeaweedFS + SQLite unless configured)").set_defaults(
        run=_serve
    )
    verify_all = commands.add_parser("verify", help="re-read every object and log; exit 2 on any finding")
    verify_all.add_argument("--report", help="write the JSON report here")
    verify_all.set_defaults(run=_verify)
    witness = commands.add_parser("witness", help="run a C2SP tlog-witness that cosigns consistent checkpoints")
    witness.add_argument("--state", required=True, help="directory of the witness's state and evidence")
    witness.add_argument("--key", required=True, help="PEM Ed25519 key of the witness (created if missing)")
    witness.add_argument("--log-key", action="append", required=True, help="'ORIGIN VKEY' of a log to witness")
    witness.add_argument("--name", default="evault.local/witness", help="the witness's key name")
    witness.add_argument("--host", default="127.0.0.1")
    witness.add_argument("--port", type=int, default=8100)
    witness.set_defaults(run=_witness)
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
