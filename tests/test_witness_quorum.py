"""An N-of-M witness quorum counts distinct keys, checked with real ``evault witness`` processes.

Three witnesses watch a vault's log: one cosigns, one refuses (it does not witness this log) and one is down.
One cosignature does not make 2 of 3, and one key listed twice is one witness, not two; once the third is back
up and cosigns, 2 of 3 holds. ``evault log verify`` names the failure ``Witness.QuorumNotMet``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compliance.bundles.proof_bundle import build_bundle
from compliance.checkpoints.policy import WITNESS_QUORUM, CheckpointTrust
from compliance.ledger.checkpoint_format import Checkpoint
from compliance.ledger.events import Actor
from compliance.ledger.log_error import LogError
from compliance.witness.client import (
    WITNESS_REFUSED,
    WITNESS_UNAVAILABLE,
    WitnessClient,
    WitnessRefused,
    WitnessUnavailable,
)
from compliance.witness.cosignature import CosignatureVerifier
from tests.helpers import server_port
from vault.cli.main import main
from vault.envelopes import NewEnvelope, create_envelope
from vault.runtime import Runtime
from vault.tenancy import create_organisation

REPO = Path(__file__).resolve().parents[1]


class WitnessProcess:
    """``evault witness`` in a process of its own, on a free port; its state and key survive a restart."""

    def __init__(self, home: Path, name: str, log_key: str) -> None:
        self.home, self.name, self.log_key = home, name, log_key
        self.port = server_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None
        self.vkey = ""

    def start(self) -> WitnessProcess:
        command = [sys.executable, "-m", "vault.cli.main", "witness", "--state", str(self.home / "state")]
        command += ["--key", str(self.home / "witness.pem"), "--log-key", self.log_key, "--name", self.name]
        command += ["--port", str(self.port)]
        self.process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("witness vkey: "), line
        self.vkey = line.split(": ", 1)[1].strip()
        for _ in range(300):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"witness {self.name} did not listen on {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def client(self) -> WitnessClient:
        return WitnessClient(self.url, CosignatureVerifier.from_vkey(self.vkey), timeout=5)


@pytest.fixture
def witnesses(runtime: Runtime, tmp_path: Path) -> Iterator[tuple[str, str, list[WitnessProcess]]]:
    """(org id, envelope id, [honest, refusing, down-to-be]) around the vault's log of one organisation."""
    with runtime.db.session() as session:
        org_id = create_organisation(session, "Quorum Org").id
        envelope_id = create_envelope(session, Actor(org_id), NewEnvelope(kind="paper", title="Loan")).id
    vkey = runtime.key.note_verifier.vkey
    ours, elsewhere = runtime.checkpoints.origin(org_id), runtime.checkpoints.origin(org_id + "x")
    started: list[WitnessProcess] = []
    try:
        for name, origin in (("w1.test", ours), ("w2.test", elsewhere), ("w3.test", ours)):
            (tmp_path / name).mkdir()
            started.append(WitnessProcess(tmp_path / name, name, f"{origin} {vkey}").start())
        yield org_id, envelope_id, started
    finally:
        for process in started:
            process.stop()


def _log_verify(tmp_path: Path, bundle: dict[str, Any], pem: str, keys: list[str], required: int) -> int:
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    (tmp_path / "vault.pem").write_text(pem)
    command = ["log", "verify", str(tmp_path / "bundle.json"), "--public-key", str(tmp_path / "vault.pem")]
    for key in keys:
        command += ["--witness-key", key]
    return main([*command, "--witnesses-required", str(required)])


def test_two_of_three_counts_distinct_witnesses_that_cosigned(
    runtime: Runtime,
    witnesses: tuple[str, str, list[WitnessProcess]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    org_id, envelope_id, (honest, refusing, flaky) = witnesses
    row = runtime.checkpoints.checkpoint_now(org_id)
    checkpoint = Checkpoint(runtime.checkpoints.origin(org_id), row.size, bytes.fromhex(row.root_hash))

    def proof_for(old: int, new: int) -> list[bytes]:
        return runtime.checkpoints.consistency_proof(org_id, old, new)

    flaky.stop()  # down
    note = row.note + honest.client().cosign(row.note, checkpoint, proof_for)
    with pytest.raises(WitnessRefused) as refused:
        refusing.client().cosign(row.note, checkpoint, proof_for)
    assert refused.value.code == WITNESS_REFUSED and refused.value.details["status"] == 404
    with pytest.raises(WitnessUnavailable) as down:
        flaky.client().cosign(row.note, checkpoint, proof_for)
    assert down.value.code == WITNESS_UNAVAILABLE

    with runtime.db.read_session() as session:
        bundle = build_bundle(session, runtime.key, envelope_id, row)
    bundle["checkpoint"] = note
    pem = runtime.key.public_pem()
    every = [honest.vkey, refusing.vkey, flaky.vkey]
    assert _log_verify(tmp_path, bundle, pem, every, 2) == 1  # one cosignature of three: 1 of 3 < 2
    assert "Witness.QuorumNotMet" in capsys.readouterr().err
    twice = [honest.vkey, honest.vkey]  # one witness listed twice is one witness: "2 of 2" is not met
    assert _log_verify(tmp_path, bundle, pem, twice, 2) == 1
    assert "Witness.QuorumNotMet" in capsys.readouterr().err
    with pytest.raises(LogError) as caught:
        CheckpointTrust(tuple(twice), 2).check(note, None)
    assert caught.value.code == WITNESS_QUORUM and caught.value.details["cosigned"] == ["w1.test"]

    flaky.start()  # back up, with its state: it cosigns the same checkpoint
    bundle["checkpoint"] = note + flaky.client().cosign(row.note, checkpoint, proof_for)
    assert _log_verify(tmp_path, bundle, pem, every, 2) == 0
    out = capsys.readouterr().out
    assert "witness w1.test cosigned" in out and "witness w3.test cosigned" in out and "w2.test" not in out
    assert _log_verify(tmp_path, bundle, pem, every, 3) == 1  # all three: the refusing one never cosigned
