"""``evault rebuild --from-bucket``: a fresh, empty database rebuilt from the WORM bucket (vault/rebuild/)."""

from __future__ import annotations

import argparse
import json

from compliance.ledger.key_ring import generations
from compliance.ledger.note import NoteVerifier
from storage.settings import Settings


def _rebuild(args: argparse.Namespace) -> int:
    from vault.rebuild.service import check_empty, rebuild
    from vault.runtime import open_runtime

    settings = Settings.from_env()
    runtime = open_runtime(settings)  # migrates the empty database and loads the data directory's keys
    try:
        check_empty(runtime.db)
        with runtime.db.read_session() as session:
            verifiers = [NoteVerifier.from_vkey(row.vkey) for row in generations(session)]
        done = rebuild(runtime.db, runtime.authoritative, runtime.copies, verifiers, settings.vault.log_origin)
    finally:
        runtime.close()
    if args.json:
        print(json.dumps([one.as_json() for one in done], indent=2))
    else:
        for one in done:
            print(
                f"{one.org_id}: {one.log_size} entries, {one.envelopes} envelopes, {one.checkpoints} checkpoints, "
                f"{one.map_commits} head-map commits"
            )
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rebuild = commands.add_parser(
        "rebuild", help="rebuild an empty database from the WORM bucket's signed logs (settings and keys stay)"
    )
    rebuild.add_argument(
        "--from-bucket", action="store_true", required=True, help="read the logs from the authoritative bucket"
    )
    rebuild.add_argument("--json", action="store_true", help="print JSON instead of a summary")
    rebuild.set_defaults(run=_rebuild)
