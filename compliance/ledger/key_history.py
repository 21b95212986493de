"""The vault's signing keys over the years: rotation and revocation statements, and following them offline.

A rotation statement is a C2SP signed note, signed by the outgoing key *and* by the incoming one (so nobody can
name a key they do not hold)::

    evault signing-key rotation/v1
    generation 1
    old <vkey of the outgoing key>
    new <vkey of the incoming key>
    valid-from 2026-12-04T21:00:00.000000Z

A revocation statement says that a key was compromised from a time on; it is signed by the revoked key itself or
by a later key of the chain::

    evault signing-key revocation/v1
    key <vkey of the compromised key>
    compromised-since 2026-12-01T00:00:00.000000Z

``KeyHistory.follow`` starts from the one key an auditor trusts (the first key's PEM) and accepts each
statement only when the key trusted so far signed it, so a key set fetched from anywhere can be checked: keys
that do not follow from the trusted key are refused (``Log.KeyChainBroken``). A signature by a revoked key is
``Log.KeyCompromised`` unless independent evidence (a witness cosignature, an RFC 3161 token) dates it before
the compromise.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from compliance.ledger.log_error import BAD_SIGNATURE, KEY_CHAIN_BROKEN, KEY_COMPROMISED, WRONG_KEY, LogError
from compliance.ledger.note import (
    Note,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    key_id,
    open_note,
    parse_note,
    raw_public_key,
)
from storage.ids import as_utc, iso

ROTATION_HEADER = "evault signing-key rotation/v1"
REVOCATION_HEADER = "evault signing-key revocation/v1"


def _broken(message: str, **details: object) -> LogError:
    return LogError(KEY_CHAIN_BROKEN, message, **details)


def _time(text: str) -> datetime:
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        raise _broken("a key statement's time is not ISO 8601", time=text) from None


def _fields(note: str, header: str, names: Sequence[str]) -> dict[str, str]:
    lines = parse_note(note).text.rstrip("\n").split("\n")
    if not lines or lines[0] != header or len(lines) != len(names) + 1:
        raise _broken(f"not an {header} statement")
    values: dict[str, str] = {}
    for name, line in zip(names, lines[1:], strict=True):
        key, sep, value = line.partition(" ")
        if key != name or not sep or not value:
            raise _broken(f"key statement line {name!r} is missing or malformed")
        values[name] = value
    return values


@dataclass(frozen=True)
class Rotation:
    generation: int
    old: NoteVerifier
    new: NoteVerifier
    valid_from: datetime
    note: str

    @classmethod
    def parse(cls, note: str) -> Rotation:
        f = _fields(note, ROTATION_HEADER, ("generation", "old", "new", "valid-from"))
        if not (f["generation"].isascii() and f["generation"].isdigit()) or int(f["generation"]) < 1:
            raise _broken("rotation generation must be a positive number")
        old, new = NoteVerifier.from_vkey(f["old"]), NoteVerifier.from_vkey(f["new"])
        if raw_public_key(old.public_key) == raw_public_key(new.public_key):
            raise _broken("a rotation must name a new key")
        rotation = cls(int(f["generation"]), old, new, _time(f["valid-from"]), note)
        _, signed_by = open_note(note, [old])
        _, signed_by_new = open_note(note, [new])  # proof that the rotation's author holds the new key
        if not signed_by or not signed_by_new:
            raise _broken("a rotation must be signed by the outgoing and the incoming key")
        return rotation


@dataclass(frozen=True)
class Revocation:
    key: NoteVerifier
    compromised_since: datetime
    note: str

    @classmethod
    def parse(cls, note: str) -> Revocation:
        f = _fields(note, REVOCATION_HEADER, ("key", "compromised-since"))
        return cls(NoteVerifier.from_vkey(f["key"]), _time(f["compromised-since"]), note)


def rotation_statement(generation: int, old: NoteSigner, new: NoteSigner, valid_from: datetime) -> str:
    """The rotation note, signed by both keys (outgoing first)."""
    text = (
        f"{ROTATION_HEADER}\ngeneration {generation}\nold {old.verifier().vkey}\nnew {new.verifier().vkey}\n"
        f"valid-from {iso(valid_from)}\n"
    )
    return _signed(text, (old, new))


def revocation_statement(key: NoteVerifier, compromised_since: datetime, signer: NoteSigner) -> str:
    return _signed(f"{REVOCATION_HEADER}\nkey {key.vkey}\ncompromised-since {iso(compromised_since)}\n", (signer,))


def _signed(text: str, signers: Sequence[NoteSigner]) -> str:
    lines = tuple(NoteSignature(s.name, s.key_id, s.sign(text.encode())) for s in signers)
    return Note(text, lines).to_text()


@dataclass(frozen=True)
class KeyPeriod:
    """One key of the chain and when it signed for the vault."""

    generation: int
    public_key: Ed25519PublicKey
    vkey: str | None  # None for a first key that no statement has named yet
    valid_from: datetime | None  # None: the first key, trusted from the start
    valid_until: datetime | None  # the next rotation's valid-from; None while current
    compromised_since: datetime | None = None

    @property
    def raw(self) -> bytes:
        return raw_public_key(self.public_key)

    def as_json(self) -> dict[str, object]:
        return {
            "generation": self.generation,
            "vkey": self.vkey,
            "valid_from": iso(self.valid_from) if self.valid_from else None,
            "valid_until": iso(self.valid_until) if self.valid_until else None,
            "compromised_since": iso(self.compromised_since) if self.compromised_since else None,
        }


class KeyHistory:
    """Every key that follows from the trusted first key, in order, with its revocation if any."""

    def __init__(self, periods: Sequence[KeyPeriod]) -> None:
        self.periods = tuple(periods)

    @classmethod
    def follow(
        cls, first_key: Ed25519PublicKey, rotations: Iterable[str] = (), revocations: Iterable[str] = ()
    ) -> KeyHistory:
        parsed = sorted((Rotation.parse(note) for note in rotations), key=lambda r: r.generation)
        periods = [KeyPeriod(0, first_key, None, None, None)]
        for rotation in parsed:
            current = periods[-1]
            if rotation.generation != current.generation + 1:
                # Two statements for one generation are a fork of the key chain; a gap leaves the rest unproven.
                raise _broken("the rotations do not form one chain", generation=rotation.generation)
            if raw_public_key(rotation.old.public_key) != current.raw:
                raise _broken("a rotation is not signed by the key trusted before it", generation=rotation.generation)
            if current.valid_from is not None and rotation.valid_from < current.valid_from:
                raise _broken("a rotation is dated before the key it retires", generation=rotation.generation)
            periods[-1] = KeyPeriod(
                current.generation, current.public_key, rotation.old.vkey, current.valid_from, rotation.valid_from
            )
            periods.append(
                KeyPeriod(rotation.generation, rotation.new.public_key, rotation.new.vkey, rotation.valid_from, None)
            )
        history = cls(periods)
        for note in revocations:
            history = history._revoked(Revocation.parse(note))
        return history

    def _revoked(self, revocation: Revocation) -> KeyHistory:
        target = self.period_of(revocation.key.public_key)
        verifiers = [
            NoteVerifier.from_vkey(p.vkey) for p in self.periods if p.generation >= target.generation and p.vkey
        ]
        try:
            open_note(revocation.note, verifiers)
        except LogError:
            raise _broken("a revocation is not signed by the revoked key or a later one") from None
        since = revocation.compromised_since
        if target.compromised_since is not None:
            since = min(since, target.compromised_since)
        return KeyHistory(
            [
                p
                if p.generation != target.generation
                else KeyPeriod(p.generation, p.public_key, p.vkey, p.valid_from, p.valid_until, since)
                for p in self.periods
            ]
        )

    @property
    def current(self) -> KeyPeriod:
        return self.periods[-1]

    def period_of(self, public_key: Ed25519PublicKey) -> KeyPeriod:
        raw = raw_public_key(public_key)
        for period in self.periods:
            if period.raw == raw:
                return period
        raise LogError(WRONG_KEY, "the key is not the trusted key nor follows from it by recorded rotations")

    def verifier_for_note(self, note: str) -> tuple[NoteVerifier, KeyPeriod]:
        """The chain key whose signature line ``note`` carries (name and key id must agree), and its period."""
        for signature in parse_note(note).signatures:
            for period in self.periods:
                if signature.key_id == key_id(signature.name, period.raw):
                    return NoteVerifier(signature.name, signature.key_id, period.public_key), period
        raise LogError(BAD_SIGNATURE, "the note carries no signature by a key of the trusted chain")

    def check_not_compromised(self, period: KeyPeriod, dated: datetime | None, what: str) -> None:
        """Refuse a signature by a revoked key unless ``dated`` (independent evidence) puts it before the compromise."""
        since = period.compromised_since
        if since is None or (dated is not None and as_utc(dated) < since):
            return
        raise LogError(
            KEY_COMPROMISED,
            f"{what} is signed by a key compromised since {iso(since)}, and nothing dates it earlier",
            generation=period.generation,
            compromised_since=iso(since),
        )


@dataclass(frozen=True)
class KeySet:
    """Statements an auditor brings (``/.well-known/evault/keys`` saved to a file): rotations and revocations."""

    rotations: tuple[str, ...] = ()
    revocations: tuple[str, ...] = ()

    @classmethod
    def parse(cls, data: bytes) -> KeySet:
        """The ``signing_key_chain`` of the well-known keys document (or that object alone)."""
        try:
            document = json.loads(data)
            chain = document.get("signing_key_chain", document)
            rows = chain["generations"]
            rotations = tuple(str(r["statement"]) for r in rows if r.get("statement"))
            revocations = tuple(str(r["revocation"]) for r in rows if r.get("revocation"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _broken("the key set is not an evault signing_key_chain document", error=str(exc)) from None
        return cls(rotations, revocations)

    def history(self, first_key: Ed25519PublicKey, more_rotations: Iterable[str] = ()) -> KeyHistory:
        """Follow this set (and the rotations an artefact carries itself, deduplicated) from the trusted key."""
        rotations = dict.fromkeys([*self.rotations, *more_rotations])
        return KeyHistory.follow(first_key, rotations, self.revocations)
