"""``evault dispose --due [--confirm]``: list, then delete, authoritative copies past their retention and not held.

It attaches to the running vault as ``evault verify`` does (never starting or migrating one). Without
``--confirm`` nothing changes. See :mod:`vault.disposal` and docs/retention.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from storage.ids import iso
from storage.settings import Settings
from vault.custody import Custody
from vault.disposal import dispose, due


def _dispose(args: argparse.Namespace) -> int:
    from compliance.attach import attach_sources
    from vault.webhooks.outbox import install_outbox

    if not args.due:
        print("evault: dispose needs --due (the records whose retention has passed)", file=sys.stderr)
        return 2
    install_outbox()  # the vault.disposed events reach the organisations' webhooks
    settings = Settings.from_env()
    sources = attach_sources(settings)
    try:
        custody = Custody(sources.db, sources.authoritative, sources.copies, settings.vault)
        rows: list[dict[str, Any]] = []
        for item in due(custody):
            row: dict[str, Any] = {
                "org_id": item.org_id,
                "envelope_id": item.envelope_id,
                "authoritative_copy_id": item.authoritative_copy_id,
                "retain_until": iso(item.retain_until),
            }
            if args.confirm:
                outcome = dispose(custody, item)
                row |= {"disposed": outcome.disposed, "refused": outcome.refused}
            rows.append(row)
    finally:
        sources.db.dispose()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            state = "" if "disposed" not in row else " disposed" if row["disposed"] else " KEPT by the store"
            print(f"{row['envelope_id']} {row['authoritative_copy_id']} retained until {row['retain_until']}{state}")
            for refusal in row.get("refused", []):
                print(f"  {refusal}")
    return 1 if any(row.get("refused") for row in rows) else 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = commands.add_parser("dispose", help="authoritative copies past their retention and not held")
    sub.add_argument("--due", action="store_true", help="list the records whose retention has passed")
    sub.add_argument("--confirm", action="store_true", help="delete their object versions and record the disposal")
    sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub.set_defaults(run=_dispose)
