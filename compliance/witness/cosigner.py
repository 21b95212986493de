"""A C2SP tlog-witness: cosigns a log's checkpoint only as an append-only extension of the last one it saw.

The witness is what makes a split view or a rewritten history detectable by someone other than the log: it
remembers, per origin, the latest checkpoint it cosigned in a JSON state file (written atomically, so a crash
leaves the old or the new state, never half of one) and refuses anything that does not extend it. A refusal
that proves misbehaviour (a fork at the same size, a failed consistency proof, a smaller tree) is kept as an
evidence file with both signed notes, for an auditor to take elsewhere.

``add_checkpoint`` speaks the protocol's statuses directly (200, 400, 403, 404, 409, 422) so the HTTP layer in
``compliance.witness.http_app`` stays a pass-through.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from compliance.ledger.checkpoint_format import Checkpoint
from compliance.ledger.log_error import MALFORMED, LogError
from compliance.ledger.merkle import EMPTY_ROOT, HASH_SIZE, verify_consistency
from compliance.ledger.note import NoteVerifier, b64decode_strict, open_note, parse_note
from compliance.witness.cosignature import CosignatureSigner, cosign

MAX_PROOF_LINES = 63
SIZE_CONTENT_TYPE = "text/x.tlog.size"
TEXT = "text/plain; charset=utf-8"
STATE_FILE = "witness-state.json"
_OLD = re.compile(r"old (0|[1-9][0-9]{0,19})")

Response = tuple[int, bytes, str]


class WitnessStateError(RuntimeError):
    """The state file is unreadable: the witness must not start (or answer) from an empty memory."""


@dataclass(frozen=True)
class LogState:
    """The latest checkpoint the witness cosigned for one origin."""

    size: int
    root_hash: bytes
    note: str


@dataclass(frozen=True)
class AddCheckpoint:
    """A parsed add-checkpoint request body."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str
    checkpoint: Checkpoint


def parse_request(body: bytes) -> AddCheckpoint:
    """``old N\\n``, up to 63 base64 hash lines, a blank line, then the signed checkpoint note."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LogError(MALFORMED, "request body is not UTF-8") from exc
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise LogError(MALFORMED, "request has no blank line before the checkpoint")
    old_line, *proof_lines = head.split("\n")
    match = _OLD.fullmatch(old_line)
    if match is None:
        raise LogError(MALFORMED, "first line is not 'old <size>'")
    if len(proof_lines) > MAX_PROOF_LINES:
        raise LogError(MALFORMED, f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = tuple(b64decode_strict(line, "consistency proof line") for line in proof_lines)
    if any(len(p) != HASH_SIZE for p in proof):
        raise LogError(MALFORMED, "a consistency proof line is not a 32-byte hash")
    checkpoint = Checkpoint.parse(parse_note(note).text)
    return AddCheckpoint(int(match.group(1)), proof, note, checkpoint)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """tmp + fsync + rename + fsync(dir): after a crash the file holds the old or the new bytes."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class Witness:
    """Cosigns checkpoints of the logs in ``logs`` (origin → the log's note verifier)."""

    def __init__(
        self,
        state_dir: Path,
        signer: CosignatureSigner,
        logs: Mapping[str, NoteVerifier],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.evidence_dir = self.state_dir / "evidence"
        self.evidence_dir.mkdir(parents=True, exist_ok=True)
        self.signer = signer
        self._logs = dict(logs)
        self._clock = clock
        self._lock = threading.Lock()
        self._state_path = self.state_dir / STATE_FILE
        self.load_state()  # fail at start, not at the first request

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Check-then-persist is one critical section (the spec's rollback race) for threads and processes."""
        with self._lock, open(self.state_dir / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def load_state(self) -> dict[str, LogState]:
        """Per-origin state as last persisted."""
        try:
            raw = json.loads(self._state_path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise WitnessStateError(f"witness state {self._state_path} is unreadable: {exc}") from exc
        try:
            return {
                origin: LogState(int(v["size"]), base64.b64decode(v["root"], validate=True), str(v["note"]))
                for origin, v in raw["logs"].items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise WitnessStateError(f"witness state {self._state_path} is malformed: {exc}") from exc

    def _save_state(self, state: Mapping[str, LogState]) -> None:
        logs = {
            o: {"size": s.size, "root": base64.b64encode(s.root_hash).decode(), "note": s.note}
            for o, s in sorted(state.items())
        }
        write_atomically(self._state_path, json.dumps({"version": 1, "logs": logs}, indent=1).encode())

    def _record_evidence(self, kind: str, reason: str, stored: LogState, req: AddCheckpoint) -> Path:
        """Keep both signed notes and the proof: together they show the log's misbehaviour to anyone."""
        now = datetime.now(UTC)
        digest = hashlib.sha256(req.note.encode()).hexdigest()[:16]
        path = self.evidence_dir / f"{now.strftime('%Y%m%dT%H%M%S.%fZ')}-{kind}-{digest}.json"
        record = {
            "kind": kind,
            "reason": reason,
            "origin": req.checkpoint.origin,
            "recorded_at": now.isoformat(),
            "witness": self.signer.verifier().vkey,
            "log_key": self._logs[req.checkpoint.origin].vkey,
            "cosigned": {"size": stored.size, "note": stored.note},
            "submitted": {
                "old_size": req.old_size,
                "proof": [base64.b64encode(p).decode() for p in req.proof],
                "note": req.note,
            },
        }
        write_atomically(path, json.dumps(record, indent=1).encode())
        return path

    def add_checkpoint(self, body: bytes) -> Response:
        """Answer one add-checkpoint request: (HTTP status, body, content type)."""
        try:
            req = parse_request(body)
        except LogError as exc:
            return 400, f"{exc.message}\n".encode(), TEXT
        origin = req.checkpoint.origin
        verifier = self._logs.get(origin)
        if verifier is None:
            return 404, b"unknown log origin\n", TEXT
        try:
            open_note(req.note, [verifier])
        except LogError as exc:
            return 403, f"checkpoint is not signed by the log's key: {exc.message}\n".encode(), TEXT
        with self._exclusive():
            state = self.load_state()
            refusal = self._check_extends(state.get(origin), req)
            if refusal is not None:
                return refusal
            line = cosign(req.checkpoint.to_text(), self.signer, int(self._clock()))
            state[origin] = LogState(req.checkpoint.size, req.checkpoint.root_hash, req.note)
            self._save_state(state)
        return 200, line.encode(), TEXT

    def _check_extends(self, stored: LogState | None, req: AddCheckpoint) -> Response | None:
        """The refusal for a checkpoint that is not an append-only extension of ``stored``, else None."""
        new = req.checkpoint
        known = stored or LogState(0, EMPTY_ROOT, "")
        if req.old_size > new.size:
            if stored is not None and req.old_size == stored.size:
                self._record_evidence("rollback", "checkpoint is smaller than the cosigned one", stored, req)
            return 400, b"old size is above the checkpoint size\n", TEXT
        if req.old_size != known.size:
            return 409, f"{known.size}\n".encode(), SIZE_CONTENT_TYPE
        if stored is not None and new.size == stored.size and new.root_hash != stored.root_hash:
            self._record_evidence("fork", "two roots for the same tree size", stored, req)
            return 409, b"checkpoint has another root at the cosigned size: the log forked\n", TEXT
        try:
            verify_consistency(known.size, new.size, req.proof, known.root_hash, new.root_hash)
        except LogError as exc:
            if stored is not None:
                self._record_evidence("inconsistent", exc.message, stored, req)
            return 422, f"consistency proof does not verify: {exc.message}\n".encode(), TEXT
        return None
