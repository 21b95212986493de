"""``evault org ...`` and ``evault key ...``: manage organisations and API keys beside a running server.

These commands open only the database named by the settings: no object store, no signing key, no migration.
A database that is missing or not at the newest schema is refused with exit code 3 (and a missing SQLite file
is never created), because a key written to the wrong database would silently never work.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from compliance.errors import InvalidInput
from storage.db import MIGRATIONS, Database
from storage.ids import iso
from storage.settings import Settings
from vault.countersign import add_signing_key
from vault.embed_origins import allowed_origins, frame_ancestors, set_allowed_origins
from vault.keys import add_key, key_view, keys, organisations, parse_duration, revoke_key, rotate_key
from vault.org_settings import organisation_view, set_mers_org_id, set_retention_default
from vault.tenancy import SCOPES, create_organisation

NOT_READY = 3
KEY_COLUMNS = ["id", "prefix", "org_id", "name", "scopes", "status", "created_at", "expires_at", "rotated_from"]


class DatabaseNotReady(Exception):
    """The database is missing or not migrated; ``evault serve`` creates and migrates it."""


def _sqlite_path(url: str) -> str | None:
    return url.removeprefix("sqlite:///").split("?", 1)[0] if url.startswith("sqlite") else None


def _revisions(connection: Connection) -> set[str]:
    """The schema revisions Alembic recorded; none when it never ran here."""
    if not inspect(connection).has_table("alembic_version"):
        return set()
    return {row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))}


@contextmanager
def open_database(settings: Settings) -> Iterator[Database]:
    """The live database, checked to exist and to be at the newest schema head, never created or migrated."""
    url = settings.database_url
    path = _sqlite_path(url)
    if path is not None and (path in ("", ":memory:") or not Path(path).is_file()):
        raise DatabaseNotReady(f"no database at {path or url}; start `evault serve` once, or set EVAULT_DATABASE_URL")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    heads = set(ScriptDirectory.from_config(config).get_heads())
    db = Database(url)
    try:
        try:
            with db.read_engine.connect() as connection:
                current = _revisions(connection)
        except SQLAlchemyError as exc:
            shown = make_url(url).render_as_string(hide_password=True)
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            raise DatabaseNotReady(f"cannot open the database {shown}: {reason}") from None
        if current != heads:
            raise DatabaseNotReady(
                f"the database schema is at {sorted(current) or 'nothing'}, this evault needs {sorted(heads)}; "
                "start `evault serve` (it migrates) before managing keys"
            )
        yield db
    finally:
        db.dispose()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return ",".join(value) if isinstance(value, list) else str(value)


def table_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max([len(c), *(len(line[i]) for line in cells)]) for i, c in enumerate(columns)]
    lines = [[c.upper() for c in columns], *cells]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def print_answer(args: argparse.Namespace, data: Any, human: str) -> None:
    print(json.dumps(data, indent=2) if args.json else human)


def _org_create(args: argparse.Namespace, db: Database) -> int:
    with db.session() as session:
        org = create_organisation(session, args.name)
    view = {"id": org.id, "name": org.name, "created_at": iso(org.created_at)}
    print_answer(args, view, f"created organisation {org.id} ({org.name})")
    return 0


def _org_list(args: argparse.Namespace, db: Database) -> int:
    with db.read_session() as session:
        views = [organisation_view(o) for o in organisations(session)]
    print_answer(args, views, table_text(views, ["id", "name", "created_at", "mers_org_id", "retention_days"]))
    return 0


def _org_set_mers_id(args: argparse.Namespace, db: Database) -> int:
    with db.session() as session:
        org = set_mers_org_id(session, args.org, None if args.clear else args.mers_org_id)
    print_answer(args, organisation_view(org), f"organisation {org.id}: MERS Org ID {_cell(org.mers_org_id)}")
    return 0


def _org_set_retention(args: argparse.Namespace, db: Database) -> int:
    with db.session() as session:
        org = set_retention_default(session, args.org, None if args.clear else args.days)
    shown = f"{org.retention_days} days" if org.retention_days is not None else "the settings' default"
    print_answer(args, organisation_view(org), f"organisation {org.id}: retention {shown}")
    return 0


def _org_origins(args: argparse.Namespace, db: Database) -> int:
    """Show the origins allowed to frame the embedded signing page; with origins or ``--clear``, replace them."""
    if args.origins and args.clear:
        raise InvalidInput("Request.Invalid", "give origins or --clear, not both")
    if args.origins or args.clear:
        with db.session() as session:
            origins = set_allowed_origins(session, args.org, [] if args.clear else args.origins)
    else:
        with db.read_session() as session:
            origins = allowed_origins(session, args.org)
    view = {"org_id": args.org, "origins": origins, "content_security_policy": frame_ancestors(origins)}
    print_answer(args, view, f"{args.org}: {view['content_security_policy']}")
    return 0


def _org_add_signing_key(args: argparse.Namespace, db: Database) -> int:
    pem = Path(args.public_key).read_text()
    with db.session() as session:
        row = add_signing_key(session, args.org, pem)
        view = {"org_id": row.org_id, "key_id": row.key_id, "created_at": iso(row.created_at)}
    print_answer(args, view, f"organisation {row.org_id}: signing key {row.key_id} registered")
    return 0


def _key_create(args: argparse.Namespace, db: Database) -> int:
    expires_in = parse_duration(args.expires_in) if args.expires_in else None
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    with db.session() as session:
        key, raw = add_key(session, args.org, args.name, scopes, expires_in)
    view = key_view(key)
    print_answer(args, {**view, "key": raw}, _shown_once(raw, view))
    return 0


def _shown_once(raw: str, view: dict[str, Any]) -> str:
    return (
        f"created key {view['id']} ({view['prefix']}) '{view['name']}' for {view['org_id']}, "
        f"scopes {_cell(view['scopes'])}, expires {_cell(view['expires_at'])}\n"
        f"    X-API-Key: {raw}\n"
        "store it now: it is shown only this once"
    )


def _key_list(args: argparse.Namespace, db: Database) -> int:
    with db.read_session() as session:
        views = [key_view(k) for k in keys(session, args.org)]
    print_answer(args, views, table_text(views, KEY_COLUMNS))
    return 0


def _key_revoke(args: argparse.Namespace, db: Database) -> int:
    with db.session() as session:
        key = revoke_key(session, args.key)
    print_answer(args, key_view(key), f"revoked key {key.id} ({key.prefix}) of {key.org_id}")
    return 0


def _key_rotate(args: argparse.Namespace, db: Database) -> int:
    grace = parse_duration(args.grace)
    with db.session() as session:
        old, new, raw = rotate_key(session, args.key, grace)
    new_view, old_view = key_view(new), key_view(old)
    human = f"rotated key {old.id} ({old.prefix}): it stops working at {old_view['expires_at']}\n"
    print_answer(args, {"key": raw, "new": new_view, "old": old_view}, human + _shown_once(raw, new_view))
    return 0


def _against_database(command: Callable[[argparse.Namespace, Database], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            with open_database(Settings.from_env()) as db:
                return command(args, db)
        except DatabaseNotReady as exc:
            print(f"evault: Database.NotReady: {exc}", file=sys.stderr)
            return NOT_READY

    return run


def database_command(
    group: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    command: Callable[[argparse.Namespace, Database], int],
) -> argparse.ArgumentParser:
    sub = group.add_parser(name, help=help_text)
    sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub.set_defaults(run=_against_database(command))
    return sub


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``org`` and ``key`` on the root parser's subcommands."""
    org = commands.add_parser("org", help="organisations (against the live database)").add_subparsers(
        dest="org_command", required=True
    )
    database_command(org, "create", "create an organisation", _org_create).add_argument("name")
    database_command(org, "list", "list organisations", _org_list)
    mers = database_command(org, "set-mers-id", "set (or --clear) the organisation's MERS Org ID", _org_set_mers_id)
    mers.add_argument("org", help="organisation id (org_...)")
    mers_value = mers.add_mutually_exclusive_group(required=True)
    mers_value.add_argument("mers_org_id", nargs="?", help="seven digits")
    mers_value.add_argument("--clear", action="store_true", help="remove it")
    keep = database_command(
        org, "set-retention", "set (or --clear) the organisation's default retention in days", _org_set_retention
    )
    keep.add_argument("org", help="organisation id (org_...)")
    keep_value = keep.add_mutually_exclusive_group(required=True)
    keep_value.add_argument("days", nargs="?", type=int, help="days from each vault-in (1 to 36600)")
    keep_value.add_argument("--clear", action="store_true", help="fall back to EVAULT_RETENTION_DAYS")
    origins = database_command(
        org, "origins", "show, set or --clear the origins allowed to frame the embedded signing page", _org_origins
    )
    origins.add_argument("org", help="organisation id (org_...)")
    origins.add_argument("origins", nargs="*", help="scheme://host[:port] each; replaces the list")
    origins.add_argument("--clear", action="store_true", help="allow no origin: frame-ancestors 'none'")

    signing = database_command(
        org,
        "add-signing-key",
        "register an Ed25519 public key the organisation countersigns receipts with",
        _org_add_signing_key,
    )
    signing.add_argument("--org", required=True, help="organisation id (org_...)")
    signing.add_argument("public_key", help="PEM file of the Ed25519 public key")

    key = commands.add_parser("key", help="API keys (against the live database)").add_subparsers(
        dest="key_command", required=True
    )
    create = database_command(key, "create", "create an API key; it is shown only once", _key_create)
    create.add_argument("--org", required=True, help="organisation id (org_...)")
    create.add_argument("--scopes", required=True, help=f"comma-separated, of: {','.join(SCOPES)}")
    create.add_argument("--name", required=True, help="what the key is for, e.g. 'loan system prod'")
    create.add_argument("--expires-in", help="lifetime, e.g. 30d, 12h (default: no expiry)")
    database_command(key, "list", "list API keys (never the keys themselves)", _key_list).add_argument(
        "--org", help="only this organisation's keys"
    )
    database_command(key, "revoke", "revoke a key now", _key_revoke).add_argument(
        "key", help="key id (key_...) or prefix (lk_...)"
    )
    rotate = database_command(key, "rotate", "issue a successor; the old key works for the grace period", _key_rotate)
    rotate.add_argument("key", help="key id (key_...) or prefix (lk_...)")
    rotate.add_argument("--grace", default="24h", help="how long the old key keeps working, e.g. 30m, 24h, 7d, 0")
