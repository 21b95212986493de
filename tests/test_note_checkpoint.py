"""Signed notes and checkpoints: Go's published vectors, round trips, and every forgery refused with its code.

Vectors: golang/mod sumdb/note/note_test.go (the PeterNeumann and EnochRoot keys and signatures).
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from compliance.checkpoints.auditor_memory import check_consistency
from compliance.ledger.checkpoint_format import Checkpoint, sign_checkpoint, verify_checkpoint, verify_extends
from compliance.ledger.log_error import (
    BAD_SIGNATURE,
    CODES,
    FORKED,
    INCONSISTENT,
    INVALID_PROOF,
    MALFORMED,
    PROVE_FROM_TRUSTED,
    ROLLED_BACK,
    WRONG_KEY,
    WRONG_ORIGIN,
    LogError,
)
from compliance.ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from compliance.ledger.note import NoteSigner, NoteVerifier, open_note, parse_note, sign_note
from compliance.ledger.tiles import MemoryTileStore, TiledTree

pytestmark = pytest.mark.once  # independent of the database under test: the SQLite pass only

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_B64 = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
PETER_SIG = f"— PeterNeumann {PETER_B64}\n"
ENOCH_B64 = "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ="
ENOCH_SIG = f"— EnochRoot {ENOCH_B64}\n"
ORIGIN = "vault.example/log/org_a"


def _raises(code: str, fn: Callable[[], object]) -> None:
    with pytest.raises(LogError) as info:
        fn()
    assert info.value.code == code, info.value.message


def _peter_signer() -> NoteSigner:
    seed = base64.b64decode(PETER_SKEY.split("+", 4)[4])[1:]
    return NoteSigner("PeterNeumann", Ed25519PrivateKey.from_private_bytes(seed))


def test_go_vectors_sign_and_open() -> None:
    peter = NoteVerifier.from_vkey(PETER_VKEY)
    enoch = NoteVerifier.from_vkey(ENOCH_VKEY)
    assert peter.vkey == PETER_VKEY and enoch.vkey == ENOCH_VKEY
    assert peter.key_id.hex() == "c74f20a3"
    signer = _peter_signer()
    assert signer.key_id == peter.key_id and signer.verifier().vkey == PETER_VKEY
    assert sign_note(TEXT, signer) == TEXT + "\n" + PETER_SIG  # Ed25519 is deterministic
    msg = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(msg, [peter]) == (TEXT, ["PeterNeumann"])  # Enoch's line: an unknown key, ignored
    assert open_note(msg, [peter, enoch]) == (TEXT, ["PeterNeumann", "EnochRoot"])
    assert open_note(TEXT + "\n" + PETER_SIG * 2, [peter]) == (TEXT, ["PeterNeumann"])
    _raises(BAD_SIGNATURE, lambda: open_note(msg, []))
    _raises(BAD_SIGNATURE, lambda: open_note(TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:], [peter]))
    _raises(MALFORMED, lambda: open_note(TEXT + "\n" + PETER_SIG * 101, [peter]))
    bad_messages = [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        TEXT + "\n" + f"— Bad Name {PETER_B64}",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
    ]
    for bad in bad_messages:
        _raises(MALFORMED, lambda: open_note(bad, [peter]))  # noqa: B023


def test_mangled_verifier_keys_are_refused() -> None:
    """Go's TestNewVerifier: every proper substring and every one-character change of the vkey fails."""
    for i in range(len(PETER_VKEY) + 1):
        for j in range(i + 1, len(PETER_VKEY) + 1):
            if (i, j) != (0, len(PETER_VKEY)):
                with pytest.raises(LogError):
                    NoteVerifier.from_vkey(PETER_VKEY[i:j])
    for i, c in enumerate(PETER_VKEY):
        with pytest.raises(LogError):
            NoteVerifier.from_vkey(PETER_VKEY[:i] + chr(ord(c) + 1) + PETER_VKEY[i + 1 :])
    wrong_length = "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
    unknown_algorithm = "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    _raises(MALFORMED, lambda: NoteVerifier.from_vkey(wrong_length))
    _raises(MALFORMED, lambda: NoteVerifier.from_vkey(unknown_algorithm))
    peter = NoteVerifier.from_vkey(PETER_VKEY)
    _raises(WRONG_KEY, lambda: NoteVerifier("PeterNeumann", b"\x00" * 4, peter.public_key))


def test_note_round_trip() -> None:
    msg = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    note = parse_note(msg)
    assert note.text == TEXT and [s.name for s in note.signatures] == ["PeterNeumann", "EnochRoot"]
    assert note.to_text() == msg
    assert parse_note(note.to_text()) == note


# --- checkpoints -------------------------------------------------------------------------------------------


def _log(n: int, salt: bytes = b"") -> tuple[TiledTree, list[bytes]]:
    hashes = [leaf_hash(salt + str(i).encode()) for i in range(n)]
    tree = TiledTree(MemoryTileStore(), 0)
    tree.append(hashes)
    return tree, hashes


@pytest.fixture(scope="module")
def signer() -> NoteSigner:
    return NoteSigner(ORIGIN, Ed25519PrivateKey.generate())


def test_checkpoint_round_trip(signer: NoteSigner) -> None:
    tree, _ = _log(300)
    for cp in (
        Checkpoint(ORIGIN, 300, tree.root()),
        Checkpoint(ORIGIN, 0, tree.root(0)),
        Checkpoint(ORIGIN, (1 << 64) - 1, b"\xff" * 32, ("ext one", "— ext two")),
    ):
        text = cp.to_text()
        assert Checkpoint.parse(text) == cp and Checkpoint.parse(text).to_text() == text
        note = sign_checkpoint(cp, signer)
        assert parse_note(note).to_text() == note
        assert verify_checkpoint(note, signer.verifier(), ORIGIN) == cp
    assert Checkpoint(ORIGIN, 300, tree.root()).to_text() == (
        f"{ORIGIN}\n300\n{base64.b64encode(tree.root()).decode()}\n"
    )


def test_checkpoint_validates_itself() -> None:
    root = b"\x00" * 32
    for origin, size, root_hash, ext in [
        ("", 1, root, ()),
        ("a\nb", 1, root, ()),
        ("a\x00", 1, root, ()),
        ("a", -1, root, ()),
        ("a", 1 << 64, root, ()),
        ("a", True, root, ()),
        ("a", 1, root[:31], ()),
        ("a", 1, "x" * 32, ()),
        ("a", 1, root, ("",)),
        ("a", 1, root, ("x\ny",)),
    ]:
        _raises(MALFORMED, lambda: Checkpoint(origin, size, root_hash, ext))  # type: ignore[arg-type]  # noqa: B023


def test_checkpoint_parse_is_strict() -> None:
    b64 = base64.b64encode(b"\x01" * 32).decode()
    urlsafe = base64.urlsafe_b64encode(b"\xff" * 32).decode()
    for bad in [
        f"o\n1\n{b64}",  # no final newline
        "o\n1\n",
        f"o\n01\n{b64}\n",
        f"o\n+1\n{b64}\n",
        f"o\n-1\n{b64}\n",
        f"o\n 1\n{b64}\n",
        f"o\n1.0\n{b64}\n",
        f"o\n١\n{b64}\n",  # a non-ASCII digit
        f"o\n18446744073709551616\n{b64}\n",
        f"o\n1\n{b64.rstrip('=')}\n",
        f"o\n1\n{b64[:-2]}F=\n",  # non-canonical trailing bits
        f"o\n1\n{base64.b64encode(b'x' * 31).decode()}\n",
        f"o\n1\n{base64.b64encode(b'x' * 33).decode()}\n",
        f"o\n1\n{urlsafe}\n",
        f"o\n1\n{b64}\n\n",  # empty extension line
        f"\n1\n{b64}\n",
    ]:
        _raises(MALFORMED, lambda: Checkpoint.parse(bad))  # noqa: B023


def test_forged_checkpoints_are_refused(signer: NoteSigner) -> None:
    tree, _ = _log(20)
    cp = Checkpoint(ORIGIN, 20, tree.root())
    good = sign_checkpoint(cp, signer)
    verifier = signer.verifier()
    other_key = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    renamed = NoteSigner("another-name", signer._key)
    body = cp.to_text()
    sig_line = good[len(body) + 1 :]
    head, b64 = sig_line.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[10] ^= 1
    forged_sig = f"{head} {base64.b64encode(raw).decode()}\n"
    cases = [
        (BAD_SIGNATURE, body + "\n" + forged_sig),  # right key id, wrong signature bytes
        (MALFORMED, body),  # no signature at all
        (MALFORMED, body + "\n"),
        (BAD_SIGNATURE, sign_checkpoint(cp, NoteSigner("someone-else", Ed25519PrivateKey.generate()))),
        (WRONG_KEY, sign_checkpoint(cp, other_key)),  # our name, another key
        (WRONG_KEY, sign_checkpoint(cp, renamed)),  # our key, another name
        (WRONG_ORIGIN, sign_checkpoint(Checkpoint("other.example/log", 20, cp.root_hash), signer)),
        (BAD_SIGNATURE, good.replace("\n20\n", "\n21\n")),  # signed text changed after signing
        (MALFORMED, sign_note(body.replace("\n20\n", "\n020\n"), signer)),  # signed, but not a checkpoint
        (MALFORMED, sign_note(body + "\n", signer)),  # missing / extra blank lines
        (BAD_SIGNATURE, good.replace(body, body.replace("\n", "\n\n", 1))),  # a blank line slipped in
        (MALFORMED, good + "— extra line\n"),
    ]
    for code, note in cases:
        _raises(code, lambda: verify_checkpoint(note, verifier, ORIGIN))  # noqa: B023


def test_root_that_does_not_match_its_size(signer: NoteSigner) -> None:
    """A checkpoint signing size 20 with the root of size 19: proofs against it fail."""
    tree, hashes = _log(20)
    note = sign_checkpoint(Checkpoint(ORIGIN, 20, tree.root(19)), signer)
    lying = verify_checkpoint(note, signer.verifier(), ORIGIN)  # the signature is fine; the root is not
    proof = tree.inclusion_proof(5, 20)
    _raises(INVALID_PROOF, lambda: verify_inclusion(hashes[5], 5, 20, proof, lying.root_hash))
    trusted = Checkpoint(ORIGIN, 10, tree.root(10))
    _raises(INCONSISTENT, lambda: verify_extends(trusted, lying, tree.consistency_proof(10, 20)))
    verify_extends(trusted, Checkpoint(ORIGIN, 20, tree.root()), tree.consistency_proof(10, 20))


def test_fork_and_rollback_are_refused() -> None:
    honest, hashes = _log(200)
    forked = TiledTree(MemoryTileStore(), 0)
    forked.append(hashes[:100] + [leaf_hash(b"forged " + str(i).encode()) for i in range(100, 220)])
    trusted = Checkpoint(ORIGIN, 150, honest.root(150))
    # The forked log extends its own 150 consistently, but not the one the auditor holds.
    seen = Checkpoint(ORIGIN, 220, forked.root())
    _raises(INCONSISTENT, lambda: verify_extends(trusted, seen, forked.consistency_proof(150, 220)))
    same_size = Checkpoint(ORIGIN, 150, forked.root(150))
    _raises(INCONSISTENT, lambda: verify_extends(trusted, same_size, []))
    # The shared prefix is still consistent with both.
    verify_consistency(100, 220, forked.consistency_proof(100, 220), honest.root(100), forked.root())
    _raises(ROLLED_BACK, lambda: verify_extends(trusted, Checkpoint(ORIGIN, 120, honest.root(120)), []))
    _raises(WRONG_ORIGIN, lambda: verify_extends(trusted, Checkpoint("x", 200, honest.root()), []))


def test_bad_inclusion_proofs_are_refused() -> None:
    tree, hashes = _log(300)
    root, proof = tree.root(), tree.inclusion_proof(77, 300)
    verify_inclusion(hashes[77], 77, 300, proof, root)
    _raises(INVALID_PROOF, lambda: verify_inclusion(hashes[78], 77, 300, proof, root))  # another leaf
    _raises(INVALID_PROOF, lambda: verify_inclusion(hashes[78], 78, 300, proof, root))  # another leaf's proof
    _raises(INVALID_PROOF, lambda: verify_inclusion(hashes[77], 77, 300, proof[:-1], root))  # truncated
    _raises(INVALID_PROOF, lambda: verify_inclusion(hashes[77], 77, 300, [*proof, root], root))  # extended
    _raises(INVALID_PROOF, lambda: verify_inclusion(hashes[77], 300, 300, proof, root))  # index ≥ size
    _raises(MALFORMED, lambda: verify_inclusion(hashes[77], 77, 300, [*proof[:-1], proof[-1][:31]], root))


def test_fuzzed_notes_and_proofs_only_raise_log_error(signer: NoteSigner) -> None:
    rng = random.Random(2024)
    tree, hashes = _log(300)
    cp = Checkpoint(ORIGIN, 300, tree.root(), ("ext",))
    good = sign_checkpoint(cp, signer)
    alphabet = "\n —+/=0aZ\x00é1 \t"
    codes: set[str] = set()
    for _ in range(400):
        chars = list(good)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(chars))
            op = rng.randrange(3)
            if op == 0:
                del chars[pos]
            elif op == 1:
                chars[pos] = rng.choice(alphabet)
            else:
                chars.insert(pos, rng.choice(alphabet))
        mutated = "".join(chars)
        try:
            assert verify_checkpoint(mutated, signer.verifier(), ORIGIN) == cp
        except LogError as exc:
            codes.add(exc.code)
    assert codes <= CODES and {MALFORMED, BAD_SIGNATURE} <= codes
    proof = tree.inclusion_proof(123, 300)
    for _ in range(400):
        p = [bytearray(x) for x in proof]
        victim = rng.randrange(len(p))
        p[victim][rng.randrange(32)] ^= 1 << rng.randrange(8)
        mutated_proof = [bytes(x) for x in p]
        if rng.random() < 0.3:
            mutated_proof = mutated_proof[: rng.randrange(len(mutated_proof))]
        with pytest.raises(LogError):
            verify_inclusion(hashes[123], rng.choice([123, 124, 299, 300]), 300, mutated_proof, tree.root())


# --- the auditor's remembered checkpoint ------------------------------------------------------------------


class _Auditor:
    """Real signed checkpoints of an honest tree and of a fork sharing its first 8 entries."""

    def __init__(self, signer: NoteSigner, state: Path) -> None:
        self.signer, self.state = signer, state
        self.pem = signer.verifier().public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        self.honest, hashes = _log(30)
        self.forked = TiledTree(MemoryTileStore(), 0)
        self.forked.append(hashes[:8] + [leaf_hash(b"forged " + str(i).encode()) for i in range(8, 30)])

    def check(self, tree: TiledTree, old: int, new: int) -> tuple[Checkpoint, Checkpoint]:
        notes = [sign_checkpoint(Checkpoint(ORIGIN, n, tree.root(n)), self.signer) for n in (old, new)]
        proof = json.dumps({"hashes": [base64.b64encode(h).decode() for h in tree.consistency_proof(old, new)]})
        return check_consistency(notes[0], notes[1], proof, self.pem, self.state)

    def refused(self, code: str, tree: TiledTree, old: int, new: int) -> dict[str, object]:
        before = (self.state / "trusted.json").read_text()
        _raises(code, lambda: self.check(tree, old, new))
        assert (self.state / "trusted.json").read_text() == before  # the memory did not move
        newest = max((self.state / "evidence").iterdir())
        evidence: dict[str, object] = json.loads(newest.read_text())
        assert evidence["error"] == code and evidence["trusted"] == json.loads(before)[ORIGIN]["note"]
        return evidence


def test_auditor_refuses_a_fork_that_does_not_start_at_the_remembered_checkpoint(
    signer: NoteSigner, tmp_path: Path
) -> None:
    auditor = _Auditor(signer, tmp_path)
    auditor.check(auditor.honest, 5, 10)  # remembered: the honest size 10
    # OLD newer than the remembered checkpoint, on the fork: the fork's own proof from 15 to 20 is valid.
    auditor.refused(PROVE_FROM_TRUSTED, auditor.forked, 15, 20)
    # OLD of the remembered size with another root: a fork, whatever the proof says.
    auditor.refused(FORKED, auditor.forked, 10, 20)
    # OLD older than the remembered checkpoint (even honest) says nothing about what was accepted.
    auditor.refused(PROVE_FROM_TRUSTED, auditor.honest, 5, 20)
    # From the remembered checkpoint the honest log proves itself, and the memory moves on.
    assert len(list((tmp_path / "evidence").iterdir())) == 3
    old, new = auditor.check(auditor.honest, 10, 20)
    assert (old.size, new.size) == (10, 20)
    assert json.loads((tmp_path / "trusted.json").read_text())[ORIGIN]["size"] == 20
    auditor.refused(FORKED, auditor.forked, 20, 30)


def test_auditor_refuses_a_new_checkpoint_of_the_remembered_size_with_another_root(
    signer: NoteSigner, tmp_path: Path
) -> None:
    auditor = _Auditor(signer, tmp_path)
    auditor.check(auditor.honest, 5, 20)
    honest_5 = sign_checkpoint(Checkpoint(ORIGIN, 5, auditor.honest.root(5)), signer)
    forked_20 = sign_checkpoint(Checkpoint(ORIGIN, 20, auditor.forked.root(20)), signer)
    proof = json.dumps({"hashes": []})
    _raises(FORKED, lambda: check_consistency(honest_5, forked_20, proof, auditor.pem, tmp_path))
