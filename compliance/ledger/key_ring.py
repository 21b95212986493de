"""The vault's key generations in the database, and the two acts on them: rotate and revoke.

Each act commits in one transaction with its log entries: a ``vault.signing_key_rotated`` (or
``vault.signing_key_revoked``) entry in *every* organisation's log, carrying the signed statement, so whoever
audits any one log sees every key that signed it (key transparency) and no organisation's history can be shown
a key that the others were not. The generation row is locked (``FOR UPDATE``) and the next generation is a
primary key, so two concurrent rotations cannot both succeed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from compliance.errors import Conflict, InvalidInput
from compliance.ledger.event_catalogue import SIGNING_KEY_REVOKED, SIGNING_KEY_ROTATED
from compliance.ledger.events import Actor, append_event
from compliance.ledger.key_history import KeyHistory, revocation_statement, rotation_statement
from compliance.ledger.note import NoteVerifier
from compliance.ledger.pkcs11_signer import Pkcs11Signer
from compliance.ledger.signer import FileSigner, Signer
from compliance.ledger.vault_key import SigningKeyError, VaultKey, load_public_key
from storage.db import Database
from storage.ids import as_utc, iso, utcnow
from storage.models import Organisation, SigningKey
from storage.settings import Pkcs11Settings

SOURCE = "signing-key"
NOT_CURRENT = "SigningKey.NotCurrent"
UNKNOWN = "SigningKey.Unknown"
ALREADY_REVOKED = "SigningKey.AlreadyRevoked"
COMPROMISE_IN_FUTURE = "SigningKey.CompromiseInFuture"
PKCS11_PREFIX = "pkcs11:"


def load_signer(ref: str, pkcs11: Pkcs11Settings | None) -> Signer:
    """The signer a generation's ``key_ref`` names: ``pkcs11:<label>`` on the configured token, else a PEM file."""
    if ref.startswith(PKCS11_PREFIX):
        if pkcs11 is None:
            raise SigningKeyError(f"the key {ref} lives on a PKCS#11 token: set EVAULT_PKCS11_LIBRARY, _TOKEN, _PIN")
        return Pkcs11Signer(pkcs11.library, pkcs11.token_label, ref.removeprefix(PKCS11_PREFIX), pkcs11.pin)
    return FileSigner.load(Path(ref))


def record_first_key(db: Database, key: VaultKey, key_ref: str) -> None:
    """At start: the configured key is generation 0 unless generations are already recorded."""
    with db.session() as session:
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        session.execute(
            insert(SigningKey)
            .values(
                generation=0,
                vkey=key.note_verifier.vkey,
                public_pem=key.public_pem(),
                key_ref=key_ref,
                valid_from=utcnow(),
            )
            .on_conflict_do_nothing()
        )


def generations(session: Session) -> list[SigningKey]:
    return list(session.exec(select(SigningKey).order_by(col(SigningKey.generation))))


def first_key_recorded(db: Database) -> bool:
    """Whether generation 0 is recorded: a process of an existing vault must then be given its key, not make one."""
    with db.read_session() as session:
        return session.get(SigningKey, 0) is not None


def _recorded(db: Database, first: VaultKey) -> list[SigningKey]:
    """The generations, once the configured key is checked to be generation 0's: a replica given another key
    (its own data directory's, made on its first start) would otherwise sign with a key no auditor was shown."""
    with db.read_session() as session:
        rows = generations(session)
    if rows[0].vkey != first.note_verifier.vkey:
        raise ValueError(
            f"it is {first.note_verifier.vkey}, not this vault's first key {rows[0].vkey}: give every process of "
            "the vault the same key (EVAULT_SIGNING_KEY)"
        )
    return rows


def current_key(db: Database, first: VaultKey, load: Callable[[str], Signer]) -> VaultKey:
    """The newest generation's key (``first`` itself before any rotation)."""
    return _generation_key(_recorded(db, first)[-1], first, load)


def key_of_generation(db: Database, first: VaultKey, load: Callable[[str], Signer], vkey: str) -> VaultKey:
    """The recorded generation whose key is ``vkey``: a process that joins a running service (an evidence
    worker) signs with the service's own generation, even after a rotation the service has not restarted for."""
    rows = _recorded(db, first)
    row = next((r for r in rows if r.vkey == vkey), None)
    if row is None:
        raise ValueError(f"no recorded generation of the signing key is {vkey}")
    return _generation_key(row, first, load)


def _generation_key(row: SigningKey, first: VaultKey, load: Callable[[str], Signer]) -> VaultKey:
    if row.generation == 0:
        return first
    key = VaultKey(first.name, load(row.key_ref))
    if key.note_verifier.vkey != row.vkey:
        raise ValueError(f"the key at {row.key_ref} is not generation {row.generation}'s key {row.vkey}")
    return key


def history(session: Session) -> KeyHistory:
    """The recorded generations, followed from generation 0 as an auditor would (each statement is checked)."""
    rows = generations(session)
    return history_of(rows, load_public_key(rows[0].public_pem.encode()))


def history_of(rows: list[SigningKey], first: Ed25519PublicKey) -> KeyHistory:
    return KeyHistory.follow(
        first,
        [r.statement for r in rows if r.statement],
        [r.revocation for r in rows if r.revocation],
    )


def _organisations(session: Session) -> list[str]:
    """Every log: a key change is recorded in each, so every auditor sees the key that signs their checkpoints."""
    return list(session.exec(select(Organisation.id).order_by(col(Organisation.id))))


def _locked_current(session: Session) -> SigningKey:
    row = session.exec(
        select(SigningKey).order_by(col(SigningKey.generation).desc()).limit(1).with_for_update()
    ).first()
    if row is None:
        raise Conflict(UNKNOWN, "no signing key is recorded yet: start the service once")
    return row


def rotate(db: Database, outgoing: VaultKey, incoming: Signer, incoming_ref: str) -> SigningKey:
    """Record ``incoming`` as the next generation, signed over by ``outgoing``, which must be the current key."""
    now = utcnow()
    new_key = VaultKey(outgoing.name, incoming)
    try:
        with db.session() as session:
            current = _locked_current(session)
            if current.vkey != outgoing.note_verifier.vkey:
                raise Conflict(NOT_CURRENT, "the outgoing key is not the current signing key", current=current.vkey)
            generation = current.generation + 1
            statement = rotation_statement(generation, outgoing.note_signer, new_key.note_signer, now)
            row = SigningKey(
                generation=generation,
                vkey=new_key.note_verifier.vkey,
                public_pem=new_key.public_pem(),
                key_ref=incoming_ref,
                valid_from=now,
                statement=statement,
            )
            session.add(row)
            data = {"generation": generation, "vkey": row.vkey, "public_key": row.public_pem, "statement": statement}
            for org_id in _organisations(session):
                actor = Actor(org_id, source=SOURCE)
                append_event(session, actor=actor, event_type=SIGNING_KEY_ROTATED, occurred_at=now, data=data)
            session.flush()
            session.expunge(row)
    except IntegrityError:
        # A concurrent rotation took this generation first (PostgreSQL's lock re-reads the old newest row).
        raise Conflict(NOT_CURRENT, "another rotation recorded this generation first; nothing changed") from None
    return row


def revoke(db: Database, current: VaultKey, generation: int, compromised_since: datetime) -> SigningKey:
    """Record that ``generation``'s key is compromised from ``compromised_since``; the current key signs that.

    The current key cannot be the compromised one: rotate first, so that the statement is made by a key that is
    still sound.
    """
    since = as_utc(compromised_since)
    now = utcnow()
    if since > now:
        raise InvalidInput(COMPROMISE_IN_FUTURE, "--compromised-since is in the future", since=iso(since))
    with db.session() as session:
        newest = _locked_current(session)
        if newest.vkey != current.note_verifier.vkey:
            raise Conflict(NOT_CURRENT, "the key given is not the current signing key", current=newest.vkey)
        if generation == newest.generation:
            raise Conflict(NOT_CURRENT, "rotate before revoking the current key: a sound key must sign the revocation")
        row = session.exec(select(SigningKey).where(SigningKey.generation == generation).with_for_update()).first()
        if row is None:
            raise InvalidInput(UNKNOWN, "no such key generation", generation=generation)
        if row.revocation is not None:
            raise Conflict(ALREADY_REVOKED, "the key is already revoked", generation=generation)
        statement = revocation_statement(NoteVerifier.from_vkey(row.vkey), since, current.note_signer)
        row.compromised_since = since
        row.revocation = statement
        session.add(row)
        data = {"generation": generation, "vkey": row.vkey, "compromised_since": iso(since), "statement": statement}
        for org_id in _organisations(session):
            actor = Actor(org_id, source=SOURCE)
            append_event(session, actor=actor, event_type=SIGNING_KEY_REVOKED, occurred_at=now, data=data)
        session.flush()
        session.expunge(row)
    return row


def key_set(session: Session) -> dict[str, Any]:
    """``/.well-known/evault/keys``' chain: every generation with its validity and the statements to check it."""
    rows = generations(session)
    periods = history_of(rows, load_public_key(rows[0].public_pem.encode())).periods
    return {
        "first_key_pem": rows[0].public_pem,
        "generations": [
            {
                **period.as_json(),
                "valid_from": iso(row.valid_from),
                "vkey": row.vkey,
                "pem": row.public_pem,
                "statement": row.statement,
                "revocation": row.revocation,
            }
            for period, row in zip(periods, rows, strict=True)
        ],
    }
