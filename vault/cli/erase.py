"""``evault erase``: erase a person named as a party, on their request (see :mod:`vault.erasure`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from storage.db import Database
from vault.cli.keys import database_command
from vault.erasure import erase_subject, subjects_by_email


def _erase(args: argparse.Namespace, db: Database) -> int:
    if bool(args.subject) == bool(args.email):
        print("evault: erase names subjects (sub_...) or --email with --org, not both", file=sys.stderr)
        return 2
    if args.email:
        if not args.org:
            print("evault: --email needs --org", file=sys.stderr)
            return 2
        with db.read_session() as session:
            subjects = subjects_by_email(session, args.org, args.email)
        if not subjects:
            print(f"evault: Subject.NotFound: no subject of {args.org} has that email", file=sys.stderr)
            return 1
    else:
        subjects = args.subject
    done: list[dict[str, Any]] = []
    for subject_id in subjects:  # each erasure commits on its own; a refusal stops the rest (exit 1)
        subject, now = erase_subject(db, subject_id)
        done.append({"subject": subject.id, "envelope_id": subject.envelope_id, "erased_now": now})
    if args.json:
        print(json.dumps(done, indent=2))
    else:
        for row in done:
            state = "erased" if row["erased_now"] else "already erased"
            print(f"{row['subject']} of {row['envelope_id']}: {state}")
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    erase = database_command(
        commands, "erase", "erase people named as parties: their values and commitment keys (not the log)", _erase
    )
    erase.add_argument("subject", nargs="*", help="subject ids (sub_...), as GET /envelopes/:id shows them")
    erase.add_argument("--email", help="every subject of --org with this email")
    erase.add_argument("--org", help="the organisation (org_...), with --email")
