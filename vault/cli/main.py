"""``evault``: the command line. Every subcommand calls the same services as the API.

``evault serve`` runs the service (embedded defaults unless configured); ``evault log verify`` and
``evault log consistency`` check a proof bundle or two checkpoints offline, with nothing but files and a key.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from compliance import strict_json
from compliance.errors import EvaultError
from compliance.ledger.vault_key import SigningKeyError
from storage.settings import Settings, SettingsError, log_format
from vault.cli.dispose import add_commands as add_dispose_commands
from vault.cli.erase import add_commands as add_erase_commands
from vault.cli.evidence import add_cert_commands, add_keys_option, add_trust_options, keys_from, trust_from
from vault.cli.imports import add_commands as add_import_commands
from vault.cli.keys import add_commands as add_key_commands
from vault.cli.packages import add_commands as add_package_commands
from vault.cli.rebuild import add_commands as add_rebuild_commands
from vault.cli.receipts import add_commands as add_receipt_commands
from vault.cli.shared_secrets import add_commands as add_shared_secret_commands
from vault.cli.signing_keys import add_commands as add_signing_key_commands
from vault.log_format import configure as configure_logging
from vault.metrics.multiproc import metrics_dir, use_multiprocess_dir

BOOTSTRAP_KEY_FILE = "bootstrap-key.txt"

log = logging.getLogger("evault")


def _say(settings: Settings, message: str, *, error: bool = False) -> None:
    """A line for the operator: printed (an error to stderr), or logged when the logs are JSON (so every line
    of the log parses)."""
    if settings.observability.log_format == "json":
        log.log(logging.ERROR if error else logging.INFO, message)
    else:
        print(message, file=sys.stderr if error else sys.stdout, flush=True)


class _Stopped(BaseException):
    """SIGTERM or SIGINT asked the service to stop (a BaseException, so no ``except Exception`` swallows it)."""


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    raise _Stopped(signum)


def _listen(host: str, port: int) -> socket.socket:
    """Bind the API's socket before anything is created: a busy port then stops the start with nothing to undo
    (and no one-time bootstrap key printed for a service that never ran)."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        from vault.runtime import StartupError  # only now: it imports the metrics library (see _serve)

        raise StartupError(f"cannot listen on {host}:{port} (EVAULT_HOST, EVAULT_PORT): {exc.strerror}") from None
    return listener


def _announce_bootstrap_key(settings: Settings, base: str, org_id: str, raw_key: str) -> None:
    """Show the one-time key on a terminal only; anywhere else (a log, a pipe) it goes to a 0600 file."""
    if sys.stdout.isatty():
        print(f"evault: created organisation {org_id} with an all-scopes API key (shown only now):", flush=True)
        print(f"    X-API-Key: {raw_key}", flush=True)
        print(
            f"    try: curl -s -H 'X-API-Key: {raw_key}' -H 'Content-Type: application/json' "
            f'-d \'{{"kind":"paper","title":"Loan 1","secured_party":{{"name":"Bank"}}}}\' '
            f"{base}/envelopes",
            flush=True,
        )
        return
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = settings.data_dir / BOOTSTRAP_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"organisation: {org_id}\nX-API-Key: {raw_key}\n")
    os.chmod(path, 0o600)
    _say(
        settings,
        f"evault: created organisation {org_id} with an all-scopes API key; stdout is not a terminal, so the "
        f"key is in {path} (mode 0600): read it, then delete the file",
    )


WORKERS_NEED_POSTGRESQL = "more than one worker needs PostgreSQL (EVAULT_DATABASE_URL): SQLite has a single writer"
WORKERS_NEED_EXTERNAL_S3 = "more than one worker needs an external S3 (EVAULT_S3_ENDPOINT): weed is one process's"


def _refuse_workers(settings: Settings, workers: int) -> None:
    """More than one worker only where several writers and one store for all of them exist. ``vault.runtime``
    is imported only to refuse: it pulls in prometheus_client, whose multiprocess directory is not set yet."""
    reason = None
    if settings.database_url.startswith("sqlite"):
        reason = f"{WORKERS_NEED_POSTGRESQL}; run one worker"
    elif settings.s3.embedded:
        reason = WORKERS_NEED_EXTERNAL_S3
    if reason is not None:
        from vault.runtime import StartupError

        raise StartupError(f"refusing to start {workers} workers: {reason}")


WORKER_HEALTHCHECK_SECONDS = 60


def _serve_workers(settings: Settings, workers: int, listener: socket.socket) -> int:
    """N uvicorn worker processes on ``listener``, after the vault was opened here once (migrations, keys, the
    first organisation, the metrics port); each worker opens its own runtime (vault.api.worker)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from vault.api.observe import metrics_registry
    from vault.metrics.exposition import serve_separately
    from vault.runtime import open_runtime
    from vault.tenancy import bootstrap

    public_url = settings.api.public_url
    if settings.api.port == 0 and not settings.env.get("EVAULT_PUBLIC_URL"):
        public_url = f"http://{settings.api.host}:{listener.getsockname()[1]}"
    runtime = None
    stop_metrics = None
    try:
        _say(settings, f"evault: opening the vault in {settings.data_dir} ...")
        runtime = open_runtime(settings)  # no background threads here: the workers run them, under leases
        stop_metrics = _metrics_port(settings, metrics_registry(runtime), serve_separately)
        with runtime.db.session() as session:
            first = bootstrap(session)
        base = f"{public_url}/api/v2/partner"
        _say(settings, f"evault: serving {base} with {workers} workers (OpenAPI: {public_url}/api/v2/openapi.json)")
        if first is not None:
            _announce_bootstrap_key(settings, base, first[0].id, first[1])
        config = uvicorn.Config(
            "vault.api.worker:create",
            factory=True,
            workers=workers,
            http="vault.api.worker:Protocol",
            log_level="info",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=settings.api.shutdown_grace_seconds,
            # uvicorn kills a worker that has not answered its ping within this many seconds, and a new worker
            # answers only once its imports are done: with the default 5 s, a loaded machine (load average 20
            # on 2 cores, seen running bench/vault_in.py --workers 2) killed and respawned every worker for ever.
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        )
        Multiprocess(config, sockets=[listener]).run()  # until SIGTERM/SIGINT, which it handles
    finally:
        if stop_metrics is not None:
            stop_metrics()
        if runtime is not None:
            runtime.close()
        listener.close()
    _say(settings, "evault: stopped")
    return 0


def _serve(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT (exit 0) or until the embedded store dies (exit 1, for a supervisor)."""
    settings = Settings.from_env()
    workers = args.workers or settings.api.workers
    if workers > 1:
        _refuse_workers(settings, workers)  # before anything is bound or created
    listener = _listen(settings.api.host, settings.api.port)
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    use_multiprocess_dir(metrics_dir(settings.data_dir))  # before anything imports prometheus_client
    if workers > 1:
        return _serve_workers(settings, workers, listener)
    import uvicorn

    from vault.api.app import create_app
    from vault.api.observe import metrics_registry
    from vault.api.server import uvicorn_config
    from vault.metrics.exposition import serve_separately
    from vault.runtime import open_runtime
    from vault.tenancy import bootstrap

    public_url = settings.api.public_url
    if settings.api.port == 0 and not settings.env.get("EVAULT_PUBLIC_URL"):
        public_url = f"http://{settings.api.host}:{listener.getsockname()[1]}"
    handled = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in handled}
    runtime = None
    stop_metrics = None
    failures: list[str] = []
    try:
        _say(settings, f"evault: opening the vault in {settings.data_dir} ...")
        runtime = open_runtime(settings)
        app = create_app(runtime)
        stop_metrics = _metrics_port(settings, metrics_registry(runtime), serve_separately)
        with runtime.db.session() as session:
            first = bootstrap(session)
        base = f"{public_url}/api/v2/partner"
        _say(settings, f"evault: serving {base}  (OpenAPI: {public_url}/api/v2/openapi.json)")
        if first is not None:
            _announce_bootstrap_key(settings, base, first[0].id, first[1])
        # On SIGTERM, requests in flight get the grace period; then uvicorn cancels them, which cancels their
        # evidence work, and the runtime's close gives that work and the background threads bounded time.
        # No logging config of uvicorn's own: its lines go through ours (text or JSON); the request lines are
        # ours too (vault/api/observe.py), with route templates and ids instead of raw paths.
        grace = settings.api.shutdown_grace_seconds
        config = uvicorn_config(
            app, settings.edge, log_level="info", log_config=None, access_log=False, timeout_graceful_shutdown=grace
        )
        server = uvicorn.Server(config)

        def stop_serving(reason: str) -> None:
            if not server.should_exit:  # already stopping on a signal (a terminal's Ctrl-C reaches weed too)
                failures.append(reason)
                server.should_exit = True

        runtime.warm_workers()
        runtime.start_checkpointer()
        runtime.start_reconciler()
        runtime.start_sweeper()
        runtime.start_webhook_sender()
        runtime.start_mailer()
        runtime.start_watchdog(stop_serving)
        # uvicorn catches the signal, shuts down gracefully, then raises it again: that ends up in _Stopped.
        server.run(sockets=[listener])
    except _Stopped:
        pass
    finally:
        for sig in handled:
            signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the clean-up short
        try:
            if stop_metrics is not None:
                stop_metrics()
            if runtime is not None:
                runtime.close()
            listener.close()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if failures:
        _say(settings, f"evault: {failures[0]}; exiting so that a supervisor restarts the service", error=True)
        return 1
    _say(settings, "evault: stopped")
    return 0


def _metrics_port(
    settings: Settings, registry: Any, serve: Callable[..., Callable[[], None]]
) -> Callable[[], None] | None:
    """Start ``/metrics`` on ``EVAULT_METRICS_PORT`` when one is set; a taken port stops the start."""
    from vault.runtime import StartupError

    obs = settings.observability
    if obs.metrics_port == 0:
        return None
    try:
        stop = serve(registry, obs.metrics_host, obs.metrics_port)
    except OSError as exc:
        raise StartupError(
            f"cannot serve metrics on {obs.metrics_host}:{obs.metrics_port} "
            f"(EVAULT_METRICS_HOST, EVAULT_METRICS_PORT): {exc.strerror}"
        ) from None
    _say(settings, f"evault: metrics on http://{obs.metrics_host}:{obs.metrics_port}/metrics")
    return stop


def _log_verify(args: argparse.Namespace) -> int:
    from compliance.bundles.proof_bundle import verify_bundle
    from compliance.ledger.log_error import NOT_PROVEN, LogError

    text = Path(args.bundle).read_bytes()
    trust = trust_from(args)
    result = verify_bundle(text, Path(args.public_key).read_bytes(), args.origin, keys_from(args), trust)
    if result.segments:
        return _log_verify_v3(text, trust, result)
    token = strict_json.loads(text).get("timestamp_token")
    for line in trust.check(strict_json.loads(text)["checkpoint"], base64.b64decode(token) if token else None):
        print(line)
    where = f"checkpoint {result.checkpoint.origin} size {result.checkpoint.size}"
    done = result.completeness
    if done is not None and done.head_seq is None:
        print(f"OK: absent: envelope {result.envelope_id} has no events at {where} (map of size {done.map_version})")
        return 0
    print(f"OK: events 0..{len(result.events) - 1} of envelope {result.envelope_id} are in {where}; chain unbroken")
    if done is not None:
        print(f"complete: event {done.head_seq} is the envelope's head at checkpoint size {result.checkpoint.size}")
        return 0
    unproven = (
        "completeness NOT proven (v1 bundle: no head map): event {len(result.events) - 1} may not be "
        "the envelope's head; later events, such as a vault-out, may have been left out"
    )
    if not args.allow_incomplete:
        raise LogError(NOT_PROVEN, unproven + "; --allow-incomplete accepts a proven prefix only")
    print(unproven)
    return 0


def _log_verify_v3(text: bytes, trust: Any, result: Any) -> int:
    """A history across logs (bundle v3): each segment, the hand-offs between them, and where it ends."""
    for log in strict_json.loads(text)["logs"]:
        token = log.get("timestamp_token")
        for line in trust.check(log["checkpoint"], base64.b64decode(token) if token else None):
            print(line)
    for segment in result.segments:
        print(
            f"OK: events {segment.first_seq}..{segment.last_seq} of envelope {result.envelope_id} are in checkpoint "
            f"{segment.origin} size {segment.checkpoint_size}; the map there names event {segment.last_seq} as the head"
            + (f"; handed off to {segment.handed_to}" if segment.handed_to else "")
        )
    last = result.segments[-1]
    if last.handed_to is not None:
        print(
            f"complete up to the hand-off: event {last.last_seq} handed control to {last.handed_to}; "
            "the history goes on in its log (its bundle proves the rest)"
        )
        return 0
    print(
        f"complete: event {last.last_seq} is the envelope's head at checkpoint {last.origin} size "
        f"{last.checkpoint_size}; chain unbroken across {len(result.segments)} segments"
    )
    return 0


def _log_consistency(args: argparse.Namespace) -> int:
    from compliance.checkpoints.auditor_memory import check_consistency

    old, new = check_consistency(
        Path(args.old).read_text(),
        Path(args.new).read_text(),
        Path(args.proof).read_text(),
        Path(args.public_key).read_bytes(),
        Path(args.state) if args.state else None,
        keys_from(args),
    )
    print(f"OK: {new.origin} size {new.size} extends size {old.size}")
    return 0


EXIT_CLEAN, EXIT_FINDINGS, EXIT_COULD_NOT_RUN = 0, 2, 3


def _verify(args: argparse.Namespace) -> int:
    """Attach to the running vault (never start, migrate or create one) and check it: 0 clean, 2 findings, 3
    could not run (no vault here, an empty vault, store not running, schema not current, no public key)."""
    from sqlalchemy.exc import SQLAlchemyError

    from compliance.attach import AttachError, attach_sources
    from compliance.verifier import CannotVerify, Options, fix_scope, verify
    from compliance.verifier.context import Interrupted
    from compliance.verifier.progress import progress_display
    from compliance.verifier.report import ReportSigner
    from compliance.verifier.run import estimate_objects
    from compliance.verifier.scope import parse_shard
    from storage.errors import StorageError
    from vault.webhooks.outbox import install_outbox

    install_outbox()  # the findings' integrity.failed events reach the organisations' webhooks

    try:
        settings = Settings.from_env()
        signer = None
        if args.report:
            try:
                signer = ReportSigner(settings.vault.report_key_path)
            except (OSError, ValueError) as exc:
                raise AttachError(
                    "Attach.NoReportKey", f"cannot load the report signing key (EVAULT_REPORT_SIGNING_KEY): {exc}"
                ) from None
        sources = attach_sources(settings)
        try:
            options = Options(
                concurrency=args.concurrency,
                claim_grace=timedelta(seconds=settings.vault.claim_grace_seconds),
                retention=timedelta(days=settings.vault.retention_days),
            )
            scope = None
            if not args.resume:
                since = datetime.fromisoformat(args.since.replace("Z", "+00:00")) if args.since else None
                if since is not None and since.tzinfo is None:
                    since = since.replace(tzinfo=UTC)
                shard = parse_shard(args.shard) if args.shard else None
                scope = fix_scope(sources, args.org or (), args.envelope or (), since, shard)
            total = estimate_objects(sources, scope) if scope is not None else 0
            with progress_display(total) as display:
                options.progress = display
                outcome = verify(sources, scope, resume=args.resume, options=options)
        finally:
            sources.db.dispose()
    except Interrupted as exc:
        print(f"evault verify: interrupted: {exc}; resume with --resume", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    except (AttachError, CannotVerify, SettingsError, StorageError, SQLAlchemyError, ValueError) as exc:
        label = getattr(exc, "code", type(exc).__name__)
        print(f"evault verify: could not run: {label}: {exc}", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    report = outcome.as_json()
    if args.report:
        assert signer is not None
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(signer.sign(report), indent=2))
    counts = outcome.counts
    print(
        f"run {outcome.run_id}: {counts.get('objects', 0)} objects, {counts.get('copies', 0)} copies, "
        f"{counts.get('entries', 0)} log entries of {len(outcome.scope.log_sizes)} logs: "
        f"{'clean' if outcome.clean else str(len(outcome.findings)) + ' findings'}"
    )
    for finding in outcome.findings:
        print(f"  {finding.code}: {finding.message} {json.dumps(finding.details, default=str)}")
    return EXIT_CLEAN if outcome.clean else EXIT_FINDINGS


def _report_verify(args: argparse.Namespace) -> int:
    from compliance.verifier.report import verify_report

    report = verify_report(Path(args.file).read_bytes(), Path(args.public_key).read_bytes(), keys_from(args))
    print(
        f"OK: report of run {report.get('run_id')} ({report.get('verdict')}, {len(report.get('findings', []))} "
        "findings) is signed by a report key the vault key endorses"
    )
    return 0


def _witness(args: argparse.Namespace) -> int:
    from compliance.witness.http_app import serve_witness

    serve_witness(Path(args.state), Path(args.key), args.log_key, args.host, args.port, name=args.name)
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="evault", description="E-vault and compliance archive")
    commands = root.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the API (embedded SeaweedFS + SQLite unless configured)")
    serve.add_argument(
        "--workers",
        type=int,
        default=0,
        help="worker processes on one port (default EVAULT_WORKERS or 1); >1 needs PostgreSQL",
    )
    serve.set_defaults(run=_serve)
    verify_all = commands.add_parser(
        "verify", help="re-read every object and log of the running vault; exit 2 on findings, 3 if it cannot run"
    )
    verify_all.add_argument("--report", help="write the signed JSON report here")
    verify_all.add_argument("--org", action="append", help="only this organisation (repeatable)")
    verify_all.add_argument("--envelope", action="append", help="only this envelope (repeatable)")
    verify_all.add_argument("--since", help="only records vaulted or changed since this ISO time")
    verify_all.add_argument("--shard", help="I/N: objects by a stable hash of their key, logs by organisation")
    verify_all.add_argument("--concurrency", type=int, default=8, help="objects read at once (default 8)")
    verify_all.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run in its fixed scope")
    verify_all.set_defaults(run=_verify)
    add_key_commands(commands)
    add_erase_commands(commands)
    add_dispose_commands(commands)
    add_import_commands(commands)
    add_signing_key_commands(commands)
    add_shared_secret_commands(commands)
    add_rebuild_commands(commands)
    report = commands.add_parser("report", help="check a verifier report offline").add_subparsers(
        dest="report_command", required=True
    )
    report_verify = report.add_parser("verify", help="check a signed report against the vault's public key")
    report_verify.add_argument("file")
    report_verify.add_argument("--public-key", required=True, help="the vault's PEM public key you trust")
    add_keys_option(report_verify)
    report_verify.set_defaults(run=_report_verify)
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
    verify.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="accept a bundle that proves a prefix of the history only (v1), and say so; else exit 1",
    )
    add_trust_options(verify)
    verify.set_defaults(run=_log_verify)
    consistency = log.add_parser("consistency", help="check that checkpoint NEW extends checkpoint OLD")
    consistency.add_argument("old")
    consistency.add_argument("new")
    consistency.add_argument("--proof", required=True, help="consistency proof JSON from /log/proof/consistency")
    consistency.add_argument("--public-key", required=True)
    consistency.add_argument("--state", help="directory keeping the last accepted checkpoint and any evidence")
    add_keys_option(consistency)
    consistency.set_defaults(run=_log_consistency)
    add_cert_commands(commands)
    add_receipt_commands(commands)
    add_package_commands(commands)
    return root


def _refusals() -> tuple[type[Exception], ...]:
    """What a command reports and exits 1 on. ``vault.runtime`` is imported only here and where the service
    starts: it pulls in the whole service, which ``evault verify`` (a nightly process) does not need."""
    from vault.runtime import StartupError

    return (EvaultError, SettingsError, StartupError, SigningKeyError, OSError)


def main(argv: list[str] | None = None) -> int:
    try:
        configure_logging(log_format(os.environ))
    except SettingsError as exc:
        print(f"evault: {exc}", file=sys.stderr)
        return 1
    args = parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except Exception as exc:
        if not isinstance(exc, _refusals()):
            raise
        label = getattr(exc, "code", type(exc).__name__)
        print(f"evault: {label}: {exc}", file=sys.stderr)
        details = getattr(exc, "details", None)
        if details:
            print(json.dumps(details, indent=2, default=str), file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
