"""``evault rebuild --from-bucket``, ``evault backup`` and ``evault restore`` (vault/rebuild/): a fresh, empty
database rebuilt from the WORM bucket, alone or with a backup of what the bucket does not hold."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from compliance.ledger.key_ring import generations
from compliance.ledger.note import NoteVerifier
from storage.settings import Settings

if TYPE_CHECKING:
    from vault.rebuild.service import Rebuilt


def _rebuild(args: argparse.Namespace) -> int:
    from vault.rebuild.backup import restore
    from vault.rebuild.service import check_empty, rebuild
    from vault.runtime import open_runtime

    settings = Settings.from_env()
    runtime = open_runtime(settings)  # migrates the empty database and loads the data directory's keys
    try:
        check_empty(runtime.db)
        with runtime.db.read_session() as session:
            verifiers = [NoteVerifier.from_vkey(row.vkey) for row in generations(session)]
        stores = (runtime.db, runtime.authoritative, runtime.copies, verifiers, settings.vault.log_origin)
        staging = runtime.custody().staging_store  # where a ceremony in progress keeps its document
        if args.command == "restore":
            done = restore(*stores, Path(args.source), staging=staging)
        else:
            done = rebuild(*stores, staging=staging)
    finally:
        runtime.close()
    _print(done, args.json)
    return 0


def _backup(args: argparse.Namespace) -> int:
    from compliance.attach import attach_sources
    from vault.rebuild.backup import write_backup

    sources = attach_sources(Settings.from_env())  # the running vault, as evault verify attaches to it
    try:
        counts = write_backup(sources.db, sources.authoritative, sources.copies, Path(args.to))
    finally:
        sources.db.dispose()
    print(json.dumps(counts, indent=2) if args.json else f"backup in {args.to}: {sum(counts.values())} rows")
    return 0


def _print(done: list[Rebuilt], as_json: bool) -> None:
    if as_json:
        print(json.dumps([one.as_json() for one in done], indent=2))
    else:
        for one in done:
            print(
                f"{one.org_id}: {one.log_size} entries, {one.envelopes} envelopes, {one.checkpoints} checkpoints, "
                f"{one.map_commits} head-map commits"
            )


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rebuild = commands.add_parser(
        "rebuild", help="rebuild an empty database from the WORM bucket's signed logs (settings and keys stay)"
    )
    rebuild.add_argument(
        "--from-bucket", action="store_true", required=True, help="read the logs from the authoritative bucket"
    )
    rebuild.add_argument("--json", action="store_true", help="print JSON instead of a summary")
    rebuild.set_defaults(run=_rebuild)
    backup = commands.add_parser("backup", help="write the database's rows and the buckets' versions to a directory")
    backup.add_argument("--to", required=True, help="the directory to write (database.json, manifest.json)")
    backup.add_argument("--json", action="store_true", help="print rows per table as JSON")
    backup.set_defaults(run=_backup)
    restore = commands.add_parser(
        "restore", help="rebuild an empty database from the bucket, then lay a backup's off-log rows over it"
    )
    restore.add_argument("--from", dest="source", required=True, help="a directory evault backup wrote")
    restore.add_argument("--json", action="store_true", help="print JSON instead of a summary")
    restore.set_defaults(run=_rebuild)
