"""``evault shared-secrets ...``: the fingerprints of the secrets every process of the vault must hold alike.

A process started with a document-signing identity or a signing-link secret other than the recorded one is
refused (:mod:`vault.shared_secrets`). ``forget`` is how such a secret is changed on purpose: give every process
the new one, forget the old fingerprint, restart them; the first to start records the new one.
"""

from __future__ import annotations

import argparse

from storage.db import Database
from storage.ids import iso
from vault.cli.keys import database_command, print_answer, table_text
from vault.shared_secrets import SETTINGS, forget, recorded_secrets


def _list(args: argparse.Namespace, db: Database) -> int:
    views = [
        {
            "name": row.name,
            "fingerprint": row.fingerprint,
            "recorded_at": iso(row.recorded_at),
            "set_by": SETTINGS[row.name],
        }
        for row in recorded_secrets(db)
    ]
    print_answer(args, views, table_text(views, ["name", "fingerprint", "recorded_at"]))
    return 0


def _forget(args: argparse.Namespace, db: Database) -> int:
    gone = forget(db, args.name)
    human = (
        f"forgot the {args.name} fingerprint: the next process to start records its own"
        if gone
        else f"no {args.name} fingerprint was recorded"
    )
    print_answer(args, {"name": args.name, "forgotten": gone}, human)
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser(
        "shared-secrets", help="fingerprints of the secrets every process must hold alike: list, forget"
    ).add_subparsers(dest="shared_secrets_command", required=True)
    database_command(group, "list", "each recorded fingerprint and when it was recorded", _list)
    forget_cmd = database_command(group, "forget", "drop a fingerprint, to change that secret on purpose", _forget)
    forget_cmd.add_argument("name", choices=sorted(SETTINGS), help="which secret")
