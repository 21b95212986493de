"""``evault signing-key ...``: the vault's own signing key over the years (rotate, revoke, list).

Like ``evault key``, these open only the live database (never create or migrate it), plus the key files or
the PKCS#11 token. A rotation takes effect for a running service at its next start: restart it after rotating.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from compliance.errors import InvalidInput
from compliance.ledger.key_ring import (
    PKCS11_PREFIX,
    current_key,
    generations,
    key_set,
    load_signer,
    revoke,
    rotate,
)
from compliance.ledger.pkcs11_signer import generate_pkcs11_key
from compliance.ledger.signer import Signer, create_key_file
from compliance.ledger.vault_key import VaultKey, load_or_create_key
from storage.db import Database
from storage.ids import as_utc, iso
from storage.models import SigningKey
from storage.settings import Settings
from vault.cli.keys import database_command

BAD_TIME = "SigningKey.BadTime"


def next_key_path(first: Path, generation: int) -> Path:
    """Where a file key of ``generation`` is created: beside the first key, named by its generation."""
    return first.with_name(f"{first.stem}.gen{generation}.pem")


def _current(settings: Settings, db: Database) -> VaultKey:
    first = load_or_create_key(settings.vault.signing_key_path, settings.vault.key_name, create=False)
    return current_key(db, first, lambda ref: load_signer(ref, settings.vault.pkcs11))


def _new_key(settings: Settings, generation: int, hsm: bool) -> tuple[Signer, str]:
    if hsm:
        pkcs11 = settings.vault.pkcs11
        if pkcs11 is None:
            raise InvalidInput("SigningKey.NoHsm", "--hsm needs EVAULT_PKCS11_LIBRARY, EVAULT_PKCS11_TOKEN, _PIN")
        label = f"{settings.vault.key_name}-gen{generation}"
        generate_pkcs11_key(pkcs11.library, pkcs11.token_label, label, pkcs11.pin)
        ref = PKCS11_PREFIX + label
        return load_signer(ref, pkcs11), ref
    path = next_key_path(settings.vault.signing_key_path, generation)
    create_key_file(path)
    return load_signer(str(path), None), str(path)


def _rotate_now(settings: Settings, db: Database, hsm: bool) -> tuple[VaultKey, SigningKey]:
    """Create the next key and record the rotation; a key file left by a rotation that did not commit is removed."""
    outgoing = _current(settings, db)
    with db.read_session() as session:
        generation = generations(session)[-1].generation + 1
    incoming, ref = _new_key(settings, generation, hsm)
    try:
        row = rotate(db, outgoing, incoming, ref)
    except BaseException:
        if not ref.startswith(PKCS11_PREFIX):
            Path(ref).unlink(missing_ok=True)
        raise
    return VaultKey(outgoing.name, incoming), row


def _rotate(args: argparse.Namespace, db: Database) -> int:
    _, row = _rotate_now(Settings.from_env(), db, args.hsm)
    if args.json:
        print(json.dumps({"generation": row.generation, "vkey": row.vkey, "key_ref": row.key_ref}))
    else:
        print(f"rotated: generation {row.generation} {row.vkey} ({row.key_ref}); restart the service to sign with it")
    return 0


def _revoke(args: argparse.Namespace, db: Database) -> int:
    """Revoke a key; the current key is first rotated away, so that a sound key signs the revocation."""
    try:
        since = as_utc(datetime.fromisoformat(args.compromised_since))
    except ValueError:
        raise InvalidInput(BAD_TIME, "--compromised-since must be an ISO 8601 time") from None
    settings = Settings.from_env()
    current = _current(settings, db)
    with db.read_session() as session:
        newest = generations(session)[-1].generation
    target = newest if args.generation is None else args.generation
    if target == newest:
        current, rotated = _rotate_now(settings, db, args.hsm)
        if not args.json:
            print(f"rotated first: generation {rotated.generation} {rotated.vkey}; restart the service to sign with it")
    row = revoke(db, current, target, since)
    if args.json:
        print(json.dumps({"generation": row.generation, "compromised_since": iso(since)}))
    else:
        print(f"revoked: generation {row.generation} is compromised since {iso(since)}")
    return 0


def _list(args: argparse.Namespace, db: Database) -> int:
    with db.read_session() as session:
        chain = key_set(session)
    print(json.dumps(chain, indent=2))
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("signing-key", help="the vault's own signing key: rotate, revoke, list").add_subparsers(
        dest="signing_key_command", required=True
    )
    rotate_cmd = database_command(group, "rotate", "create the next signing key and record the rotation", _rotate)
    rotate_cmd.add_argument("--hsm", action="store_true", help="create the key on the PKCS#11 token (EVAULT_PKCS11_*)")
    revoke_cmd = database_command(group, "revoke", "record that a retired key was compromised", _revoke)
    revoke_cmd.add_argument("--compromised-since", required=True, help="ISO 8601 time from which it is suspect")
    revoke_cmd.add_argument("--generation", type=int, help="the key generation (default: the current one)")
    revoke_cmd.add_argument("--hsm", action="store_true", help="when rotating first, create the key on the token")
    database_command(group, "list", "every key generation with its validity and statements", _list)
