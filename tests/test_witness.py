"""Witness and cosignatures: the C2SP protocol over a real socket, and every refusal the spec requires.

A real log (``TiledTree``) signs checkpoints; the witness runs under uvicorn on 127.0.0.1 and
``WitnessClient`` talks to it, so the wire format is checked end to end.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar.testing import TestClient

from compliance.checkpoints.publisher import CheckpointService, latest_checkpoint
from compliance.ledger.checkpoint_format import Checkpoint, sign_checkpoint
from compliance.ledger.log_error import BAD_SIGNATURE, MALFORMED, WRONG_KEY, LogError
from compliance.ledger.merkle import leaf_hash
from compliance.ledger.note import NoteSigner, NoteVerifier, sign_note
from compliance.ledger.tiles import MemoryTileStore, TiledTree
from compliance.witness.client import (
    WITNESS_REFUSED,
    WITNESS_UNAVAILABLE,
    WitnessClient,
    WitnessRefused,
    WitnessUnavailable,
    request_body,
)
from compliance.witness.cosignature import (
    CosignatureSigner,
    CosignatureVerifier,
    cosign,
    cosignature_key_id,
    verify_cosignature,
)
from compliance.witness.cosigner import STATE_FILE, Witness, WitnessStateError, parse_request
from compliance.witness.http_app import build_witness, create_witness_app, parse_log_keys
from tests.helpers import create_envelope
from tests.ports import aux_port
from vault.runtime import Runtime

ORIGIN = "vault.example/log/org_a"
NOW = 1_700_000_000


class Log:
    """A log that can sign honest checkpoints and, for the tests, forged ones."""

    def __init__(self, signer: NoteSigner, origin: str = ORIGIN) -> None:
        self.signer = signer
        self.origin = origin
        self.tree = TiledTree(MemoryTileStore(), 0)

    def append(self, n: int, tag: bytes = b"") -> None:
        start = self.tree.size
        self.tree.append([leaf_hash(tag + b"entry %d" % i) for i in range(start, start + n)])

    def checkpoint(self, size: int | None = None) -> tuple[str, Checkpoint]:
        cp = Checkpoint(self.origin, self.tree.size if size is None else size, self.tree.root(size))
        return sign_checkpoint(cp, self.signer), cp

    def proof(self, old: int, new: int) -> list[bytes]:
        return self.tree.consistency_proof(old, new)


def _key(name: str) -> NoteSigner:
    return NoteSigner(name, Ed25519PrivateKey.generate())


@pytest.fixture
def log_signer() -> NoteSigner:
    return _key(ORIGIN)


@pytest.fixture
def wsigner() -> CosignatureSigner:
    return CosignatureSigner("witness.example/w1", Ed25519PrivateKey.generate())


@pytest.fixture
def witness(tmp_path: Path, wsigner: CosignatureSigner, log_signer: NoteSigner) -> Witness:
    return Witness(tmp_path, wsigner, {ORIGIN: log_signer.verifier()}, clock=lambda: NOW)


def _add(witness: Witness, old: int, proof: list[bytes], note: str) -> tuple[int, bytes, str]:
    return witness.add_checkpoint(request_body(old, proof, note))


def _evidence(witness: Witness) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted(witness.evidence_dir.iterdir())]


# --- cosignatures ---------------------------------------------------------------------------------------


def test_cosignature_layout_follows_the_spec(wsigner: CosignatureSigner) -> None:
    body = Checkpoint(ORIGIN, 5, hashlib.sha256(b"r").digest()).to_text()
    line = cosign(body, wsigner, NOW)
    name, b64 = line[len("— ") : -1].split(" ")
    raw = base64.b64decode(b64)
    pub = wsigner.verifier().public_key
    assert name == wsigner.name and len(raw) == 4 + 8 + 64
    assert raw[:4] == cosignature_key_id(wsigner.name, raw_pub := pub.public_bytes_raw())
    assert raw[:4] == hashlib.sha256(wsigner.name.encode() + b"\n\x04" + raw_pub).digest()[:4]
    assert struct.unpack(">Q", raw[4:12])[0] == NOW
    pub.verify(raw[12:], f"cosignature/v1\ntime {NOW}\n".encode() + body.encode())  # raises if wrong


def test_cosignature_vkey_round_trip(wsigner: CosignatureSigner, log_signer: NoteSigner) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 1, hashlib.sha256(b"x").digest()), log_signer)
    body = note[: note.index("\n\n") + 1]
    cosigned = note + cosign(body, wsigner, NOW)
    verifier = CosignatureVerifier.from_vkey(wsigner.verifier().vkey)
    assert verifier.vkey == wsigner.verifier().vkey
    assert base64.b64decode(verifier.vkey.split("+", 2)[2])[0] == 0x04
    assert verify_cosignature(cosigned, verifier) == NOW
    with pytest.raises(LogError) as exc:  # a cosignature/v1 key is not a note key, and the other way round
        NoteVerifier.from_vkey(verifier.vkey)
    assert exc.value.code == MALFORMED
    with pytest.raises(LogError):
        CosignatureVerifier.from_vkey(log_signer.verifier().vkey)


def test_cosignature_refuses_tampering_other_keys_and_truncation(
    wsigner: CosignatureSigner, log_signer: NoteSigner
) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 1, hashlib.sha256(b"x").digest()), log_signer)
    body = note[: note.index("\n\n") + 1]
    line = cosign(body, wsigner, NOW)
    good = note + line
    verifier = wsigner.verifier()

    other_body = body.replace("\n1\n", "\n2\n")
    tampered = sign_checkpoint(Checkpoint.parse(other_body), log_signer) + line
    with pytest.raises(LogError) as exc:
        verify_cosignature(tampered, verifier)
    assert exc.value.code == BAD_SIGNATURE

    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    raw[4:12] = struct.pack(">Q", NOW + 1)  # the timestamp is signed too
    retimed = note + f"— {wsigner.name} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(LogError) as exc:
        verify_cosignature(retimed, verifier)
    assert exc.value.code == BAD_SIGNATURE

    stranger = CosignatureSigner(wsigner.name, Ed25519PrivateKey.generate())
    with pytest.raises(LogError) as exc:
        verify_cosignature(note + cosign(body, stranger, NOW), verifier)
    assert exc.value.code == WRONG_KEY
    with pytest.raises(LogError) as exc:
        verify_cosignature(good, stranger.verifier())
    assert exc.value.code == WRONG_KEY
    with pytest.raises(LogError) as exc:  # a log's own signature is not a cosignature
        verify_cosignature(note, verifier)
    assert exc.value.code == BAD_SIGNATURE

    short = base64.b64encode(bytes(raw[:-8])).decode()
    with pytest.raises(LogError) as exc:
        verify_cosignature(note + f"— {wsigner.name} {short}\n", verifier)
    assert exc.value.code == MALFORMED
    with pytest.raises(LogError) as exc:
        verify_cosignature(good[:-10] + "\n", verifier)
    assert exc.value.code == MALFORMED
    assert verify_cosignature(good, verifier) == NOW


# --- witness logic ---------------------------------------------------------------------------------------


def test_first_and_later_checkpoints_are_cosigned(witness: Witness, log_signer: NoteSigner) -> None:
    log = Log(log_signer)
    log.append(3)
    note, _ = log.checkpoint()
    status, body, ctype = _add(witness, 0, [], note)
    assert (status, ctype) == (200, "text/plain; charset=utf-8")
    assert verify_cosignature(note + body.decode(), witness.signer.verifier()) == NOW
    log.append(10)
    note2, _ = log.checkpoint()
    status, body, _ = _add(witness, 3, log.proof(3, 13), note2)
    assert status == 200
    verify_cosignature(note2 + body.decode(), witness.signer.verifier())
    assert witness.load_state()[ORIGIN].size == 13
    status, _, _ = _add(witness, 13, [], note2)  # the same checkpoint again is fine
    assert status == 200
    assert _evidence(witness) == []


def test_stale_old_size_gets_409_with_the_size(witness: Witness, log_signer: NoteSigner) -> None:
    log = Log(log_signer)
    log.append(4)
    assert _add(witness, 0, [], log.checkpoint()[0])[0] == 200
    log.append(4)
    assert _add(witness, 0, [], log.checkpoint()[0]) == (409, b"4\n", "text/x.tlog.size")
    assert _add(witness, 2, log.proof(2, 8), log.checkpoint()[0]) == (409, b"4\n", "text/x.tlog.size")


def test_fork_at_the_same_size_is_refused_with_evidence(
    tmp_path: Path, witness: Witness, log_signer: NoteSigner
) -> None:
    honest, forked = Log(log_signer), Log(log_signer)
    honest.append(5)
    forked.append(5, tag=b"evil ")
    good, _ = honest.checkpoint()
    assert _add(witness, 0, [], good)[0] == 200
    bad, _ = forked.checkpoint()
    status, body, _ = _add(witness, 5, [], bad)
    assert status == 409 and b"forked" in body
    [record] = _evidence(witness)
    assert record["kind"] == "fork"
    assert record["cosigned"] == {"size": 5, "note": good}
    assert isinstance(record["submitted"], dict) and record["submitted"]["note"] == bad
    assert witness.load_state()[ORIGIN].note == good  # the state did not move

    # A restarted witness reads its state file and still refuses the fork.
    again = Witness(tmp_path, witness.signer, {ORIGIN: log_signer.verifier()})
    assert _add(again, 5, [], bad)[0] == 409
    assert len(_evidence(again)) == 2


def test_bigger_tree_that_does_not_extend_is_refused(witness: Witness, log_signer: NoteSigner) -> None:
    honest, forked = Log(log_signer), Log(log_signer)
    honest.append(6)
    forked.append(6, tag=b"evil ")
    assert _add(witness, 0, [], honest.checkpoint()[0])[0] == 200
    forked.append(10)
    bad, _ = forked.checkpoint()
    status, _, _ = _add(witness, 6, forked.proof(6, 16), bad)  # the forked log's own proof
    assert status == 422
    honest.append(10)
    status, _, _ = _add(witness, 6, honest.proof(6, 16), bad)  # an honest proof for another root
    assert status == 422
    assert _add(witness, 6, [b"\0" * 32], honest.checkpoint()[0])[0] == 422
    kinds = [r["kind"] for r in _evidence(witness)]
    assert kinds == ["inconsistent"] * 3
    assert witness.load_state()[ORIGIN].size == 6
    assert _add(witness, 6, honest.proof(6, 16), honest.checkpoint()[0])[0] == 200


def test_rollback_is_refused_with_evidence(witness: Witness, log_signer: NoteSigner) -> None:
    log = Log(log_signer)
    log.append(9)
    assert _add(witness, 0, [], log.checkpoint()[0])[0] == 200
    small, _ = log.checkpoint(4)
    assert _add(witness, 9, [], small)[0] == 400
    assert _add(witness, 4, [], small) == (409, b"9\n", "text/x.tlog.size")
    assert [r["kind"] for r in _evidence(witness)] == ["rollback"]
    assert witness.load_state()[ORIGIN].size == 9


def test_unknown_origin_and_wrong_key_are_refused(witness: Witness, log_signer: NoteSigner) -> None:
    other = Log(_key("other.example/log"), origin="other.example/log")
    other.append(1)
    assert _add(witness, 0, [], other.checkpoint()[0])[0] == 404
    impostor = Log(_key(ORIGIN))  # right name and origin, wrong key
    impostor.append(1)
    assert _add(witness, 0, [], impostor.checkpoint()[0])[0] == 403
    log = Log(log_signer)
    log.append(1)
    note, cp = log.checkpoint()
    tampered = note.replace(base64.b64encode(cp.root_hash).decode(), base64.b64encode(b"\1" * 32).decode())
    assert _add(witness, 0, [], tampered)[0] == 403
    assert witness.load_state() == {} and _evidence(witness) == []


def test_malformed_requests_are_400(witness: Witness, log_signer: NoteSigner) -> None:
    log = Log(log_signer)
    log.append(2)
    note, _ = log.checkpoint()
    too_long = b"".join(base64.b64encode(b"\0" * 32) + b"\n" for _ in range(64))
    for body in [
        b"old 01\n\n" + note.encode(),
        b"old 0\n" + note.encode(),
        b"old 0\nnot base64\n\n" + note.encode(),
        b"old 0\n" + b"AAAA\n" + b"\n" + note.encode(),
        b"old 0\n" + too_long + b"\n" + note.encode(),
        b"\xff\xfe",
        b"old 0\n\nnot a note\n",
    ]:
        assert witness.add_checkpoint(body)[0] == 400, body[:40]
    with pytest.raises(LogError):
        parse_request(b"old 0\n\n" + note.encode()[:-5])


def test_state_file_is_json_and_a_corrupt_one_stops_the_start(
    tmp_path: Path, witness: Witness, log_signer: NoteSigner
) -> None:
    log = Log(log_signer)
    log.append(2)
    note, cp = log.checkpoint()
    assert _add(witness, 0, [], note)[0] == 200
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert state["logs"][ORIGIN] == {"size": 2, "root": base64.b64encode(cp.root_hash).decode(), "note": note}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    (tmp_path / STATE_FILE).write_text("{")
    with pytest.raises(WitnessStateError):
        Witness(tmp_path, witness.signer, {ORIGIN: log_signer.verifier()})


def test_app_passes_status_and_content_type(witness: Witness, log_signer: NoteSigner) -> None:
    log = Log(log_signer)
    log.append(3)
    note, _ = log.checkpoint()
    with TestClient(create_witness_app(witness)) as client:
        ok = client.post("/add-checkpoint", content=request_body(0, [], note))
        assert ok.status_code == 200 and ok.text.startswith("— witness.example/w1 ")
        stale = client.post("/add-checkpoint", content=request_body(0, [], note))
        assert stale.status_code == 409 and stale.text == "3\n"
        assert stale.headers["content-type"] == "text/x.tlog.size"
        assert client.post("/add-checkpoint", content=b"x" * 70_000).status_code == 413


def test_log_keys_config(log_signer: NoteSigner) -> None:
    vkey = log_signer.verifier().vkey
    assert list(parse_log_keys([vkey])) == [ORIGIN]
    assert list(parse_log_keys([f"another origin {vkey}"])) == ["another origin"]
    with pytest.raises(ValueError, match="twice"):
        parse_log_keys([vkey, vkey])


# --- over a real socket -----------------------------------------------------------------------------------


class Served:
    def __init__(self, witness: Witness) -> None:
        self.port = aux_port("witness")
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_witness_app(witness), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return self
            self.thread.join(0.01)
        raise RuntimeError("witness server did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)


@pytest.fixture
def served(tmp_path: Path, log_signer: NoteSigner) -> Iterator[tuple[Served, Witness]]:
    vkeys = [log_signer.verifier().vkey]
    witness = build_witness(tmp_path / "w", tmp_path / "witness.pem", vkeys, name="w.test")
    with Served(witness) as server:
        yield server, witness


def test_client_over_http_cosigns_recovers_and_refuses_a_fork(
    served: tuple[Served, Witness], log_signer: NoteSigner
) -> None:
    server, witness = served
    verifier = CosignatureVerifier.from_vkey(witness.signer.verifier().vkey)
    log = Log(log_signer)
    log.append(7)
    note, cp = log.checkpoint()
    client = WitnessClient(server.url, verifier, timeout=5)
    line = client.cosign(note, cp, log.proof)
    assert verify_cosignature(note + line, verifier) > 0 and client.known_size(ORIGIN) == 7

    # A second client (say, after a restart of the checkpoint service) starts from 0, gets 409 and recovers.
    log.append(300)
    note2, cp2 = log.checkpoint()
    calls: list[tuple[int, int]] = []

    def proof_for(old: int, new: int) -> list[bytes]:
        calls.append((old, new))
        return log.proof(old, new)

    fresh = WitnessClient(server.url + "/", verifier, timeout=5)
    line2 = fresh.cosign(note2, cp2, proof_for)
    assert calls == [(7, 307)] and fresh.known_size(ORIGIN) == 307
    verify_cosignature(note2 + line2, verifier)

    forked = Log(log_signer)
    forked.append(307, tag=b"evil ")
    bad, bad_cp = forked.checkpoint()
    with pytest.raises(WitnessRefused) as exc:
        fresh.cosign(bad, bad_cp, forked.proof)
    assert exc.value.code == WITNESS_REFUSED and exc.value.details["status"] == 409
    assert [r["kind"] for r in _evidence(witness)] == ["fork"]

    # The client does not trust a cosignature from a key it was not given.
    stranger = CosignatureSigner("w.test", Ed25519PrivateKey.generate()).verifier()
    log.append(1)
    note3, cp3 = log.checkpoint()
    with pytest.raises(LogError) as lexc:
        WitnessClient(server.url, stranger, timeout=5).cosign(note3, cp3, log.proof)
    assert lexc.value.code == WRONG_KEY


def test_client_refusals_and_unavailable(served: tuple[Served, Witness], log_signer: NoteSigner) -> None:
    server, witness = served
    verifier = witness.signer.verifier()
    impostor = Log(_key(ORIGIN))
    impostor.append(2)
    note, cp = impostor.checkpoint()
    with pytest.raises(WitnessRefused) as exc:
        WitnessClient(server.url, verifier, timeout=5).cosign(note, cp, impostor.proof)
    assert exc.value.details["status"] == 403
    with pytest.raises(LogError):  # the note must be the checkpoint's
        wrong = Checkpoint(ORIGIN, 1, cp.root_hash)
        WitnessClient(server.url, verifier, timeout=5).cosign(note, wrong, impostor.proof)

    closed = aux_port("closed")
    with pytest.raises(WitnessUnavailable) as uexc:
        WitnessClient(f"http://127.0.0.1:{closed}", verifier, timeout=2).cosign(note, cp, impostor.proof)
    assert uexc.value.code == WITNESS_UNAVAILABLE


def test_client_refuses_a_note_of_another_checkpoint(log_signer: NoteSigner) -> None:
    # The client sends exactly the log's note: a note signed over other text is not this checkpoint.
    cp = Checkpoint(ORIGIN, 1, hashlib.sha256(b"x").digest())
    other = sign_note(Checkpoint(ORIGIN, 2, cp.root_hash).to_text(), log_signer)
    verifier = CosignatureSigner("w", Ed25519PrivateKey.generate()).verifier()
    with pytest.raises(LogError) as exc:
        WitnessClient("http://127.0.0.1:1", verifier, timeout=1).cosign(other, cp, lambda a, b: [])
    assert exc.value.code == MALFORMED


# --- one witness, many organisations' logs, in the vault's checkpointer ------------------------------------


def _witnessed_service(runtime: Runtime, clients: list[WitnessClient]) -> CheckpointService:
    return CheckpointService(
        runtime.db,
        runtime.authoritative,
        runtime.key.note_signer,
        runtime.settings.vault.log_origin,
        timedelta(days=1),
        clients,
    )


def _witness_for(runtime: Runtime, tmp_path: Path, org_ids: list[str]) -> Witness:
    vkey = runtime.key.note_verifier.vkey
    logs = [f"{runtime.checkpoints.origin(org_id)} {vkey}" for org_id in org_ids]
    return build_witness(tmp_path / "w", tmp_path / "w.pem", logs, name="w.test")


def test_one_witness_cosigns_every_organisations_log(
    runtime: Runtime, client: Any, make_key: Any, tmp_path: Path
) -> None:
    (org_a, key_a), (org_b, key_b) = make_key(), make_key()
    for _ in range(3):  # org A's log grows past org B's: a shared last-seen size would refuse B
        create_envelope(client, {"X-API-Key": key_a})
    witness = _witness_for(runtime, tmp_path, [org_a, org_b])
    verifier = CosignatureVerifier.from_vkey(witness.signer.verifier().vkey)
    with Served(witness) as server:
        service = _witnessed_service(runtime, [WitnessClient(server.url, verifier, timeout=5)])
        rows = [service.checkpoint_now(org_a), service.checkpoint_now(org_b)]
        create_envelope(client, {"X-API-Key": key_b})
        create_envelope(client, {"X-API-Key": key_a})
        rows += [service.checkpoint_now(org_b), service.checkpoint_now(org_a)]
    a1, b1, b2, a2 = (r.size for r in rows)
    # Each later checkpoint covers one new envelope's event and the map.root entry that ends every checkpoint.
    assert a1 > b1 and (b2, a2) == (b1 + 2, a1 + 2)
    for row in rows:
        assert verify_cosignature(row.note, verifier) > 0
    state = witness.load_state()
    assert {origin: s.size for origin, s in state.items()} == {
        runtime.checkpoints.origin(org_a): a2,
        runtime.checkpoints.origin(org_b): b2,
    }


def test_a_refused_organisation_does_not_stop_the_others(
    runtime: Runtime, client: Any, make_key: Any, tmp_path: Path
) -> None:
    orgs = sorted([make_key()[0], make_key()[0]])
    bad, good = orgs  # the checkpointer meets the refused log first
    witness = _witness_for(runtime, tmp_path, [good])  # the witness does not know ``bad``'s log: 404
    verifier = CosignatureVerifier.from_vkey(witness.signer.verifier().vkey)
    errors: list[tuple[str | None, Exception]] = []
    with Served(witness) as server:
        service = _witnessed_service(runtime, [WitnessClient(server.url, verifier, timeout=5)])
        stop = threading.Event()
        loop = threading.Thread(
            target=service.run_periodically, args=(0.05, stop, lambda org, exc: errors.append((org, exc)))
        )
        loop.start()
        try:
            for _ in range(200):
                with runtime.db.read_session() as session:
                    done = latest_checkpoint(session, good)
                if done is not None and errors:
                    break
                time.sleep(0.05)
        finally:
            stop.set()
            loop.join(10)
    assert done is not None and verify_cosignature(done.note, verifier) > 0
    assert {org for org, _ in errors} == {bad}
    assert all(isinstance(exc, WitnessRefused) and exc.details["status"] == 404 for _, exc in errors)
    with runtime.db.read_session() as session:
        assert latest_checkpoint(session, bad) is None


class _Stalled:
    """A cosigner that holds one log's checkpoint until released (a witness that hangs for that log)."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.entered = threading.Event()
        self.release = threading.Event()

    def cosign(self, note: str, checkpoint: Checkpoint, proof_for: Any) -> str:
        if checkpoint.origin == self.origin:
            self.entered.set()
            self.release.wait(10)
        return ""


def test_a_hanging_witness_for_one_organisation_does_not_hold_up_another(runtime: Runtime, make_key: Any) -> None:
    slow, fast = make_key()[0], make_key()[0]
    stalled = _Stalled(runtime.checkpoints.origin(slow))
    service = CheckpointService(
        runtime.db,
        runtime.authoritative,
        runtime.key.note_signer,
        runtime.settings.vault.log_origin,
        timedelta(days=1),
        [stalled],
    )
    held = threading.Thread(target=service.checkpoint_now, args=(slow,))
    held.start()
    try:
        assert stalled.entered.wait(10)
        started = time.monotonic()
        assert service.checkpoint_now(fast).size > 0
        assert time.monotonic() - started < 5
    finally:
        stalled.release.set()
        held.join(10)
