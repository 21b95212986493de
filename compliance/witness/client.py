"""Asks one C2SP tlog-witness to cosign a checkpoint, and trusts the answer only after verifying it.

The client remembers, per log origin, the size the witness last cosigned of that log (starting at 0) and
proves consistency from it: one witness serves every organisation's log, and each log has its own history.
When
the witness says 409 with its own size (a restart of ours, or another submitter), the client re-proves from
that size once. Anything else the witness refuses is ``Witness.Refused`` (the log and the witness disagree,
which an operator must look at); a witness that cannot be reached is ``Witness.Unavailable`` (retry later).
A cosignature that does not verify is a ``LogError``.
"""

from __future__ import annotations

import base64
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable

from compliance.errors import Conflict, Unavailable
from compliance.ledger.checkpoint_format import Checkpoint
from compliance.ledger.log_error import MALFORMED, LogError
from compliance.ledger.note import parse_note
from compliance.witness.cosignature import CosignatureVerifier, verify_cosignature

WITNESS_REFUSED = "Witness.Refused"
WITNESS_UNAVAILABLE = "Witness.Unavailable"
SIZE_CONTENT_TYPE = "text/x.tlog.size"
MAX_RESPONSE_BYTES = 64 * 1024
_SIZE = re.compile(r"(0|[1-9][0-9]{0,19})\n")


class WitnessRefused(Conflict):
    """The witness answered and would not cosign (fork, rollback, bad proof, unknown log or key)."""


class WitnessUnavailable(Unavailable):
    """The witness could not be reached or failed (timeout, connection refused, 5xx)."""


ProofFor = Callable[[int, int], list[bytes]]


def request_body(old_size: int, proof: list[bytes], note: str) -> bytes:
    """The add-checkpoint body: ``old N``, the proof hashes in base64, a blank line, the signed note."""
    lines = [f"old {old_size}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode()


class WitnessClient:
    """One witness at ``url`` (its submission prefix), whose cosignatures ``verifier`` checks."""

    def __init__(self, url: str, verifier: CosignatureVerifier, timeout: float) -> None:
        self.url = url.rstrip("/") + "/add-checkpoint"
        self.verifier = verifier
        self.timeout = timeout
        self._sizes: dict[str, int] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def known_size(self, origin: str) -> int:
        """The size of ``origin``'s log that this witness last cosigned, as far as this client knows."""
        return self._sizes.get(origin, 0)

    def _origin_lock(self, origin: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(origin, threading.Lock())

    def cosign(self, note: str, checkpoint: Checkpoint, proof_for: ProofFor) -> str:
        """The witness's verified cosignature line(s) for ``note``, ready to append to it."""
        if parse_note(note).text != checkpoint.to_text():
            raise LogError(MALFORMED, "note is not the signed form of this checkpoint")
        origin = checkpoint.origin
        with self._origin_lock(origin):  # one submission per log at a time keeps its size meaningful
            for attempt in range(2):
                old = self.known_size(origin)
                if old > checkpoint.size:
                    raise WitnessRefused(
                        WITNESS_REFUSED,
                        f"witness has cosigned size {old}, above checkpoint size {checkpoint.size}",
                        witness=self.url,
                        origin=origin,
                        witness_size=old,
                    )
                proof = proof_for(old, checkpoint.size) if 0 < old < checkpoint.size else []
                status, content_type, body = self._post(request_body(old, proof, note))
                if status == 200:
                    lines = self._verified_lines(note, body)
                    self._sizes[origin] = checkpoint.size
                    return lines
                witness_size = _conflict_size(status, content_type, body)
                if witness_size is not None and witness_size != old and attempt == 0:
                    self._sizes[origin] = witness_size
                    continue
                raise WitnessRefused(
                    WITNESS_REFUSED,
                    f"witness refused the checkpoint ({status}): {_snippet(body)}",
                    witness=self.url,
                    origin=origin,
                    status=status,
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def _verified_lines(self, note: str, body: bytes) -> str:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LogError(MALFORMED, "witness response is not UTF-8") from exc
        if not text.endswith("\n"):
            raise LogError(MALFORMED, "witness response is not signature lines")
        verify_cosignature(note + text, self.verifier)  # parses every line; unknown keys are ignored
        before = set(parse_note(note).signatures)
        new = [s for s in parse_note(note + text).signatures if s not in before and self.verifier.matches(s)]
        if not new:
            raise LogError(MALFORMED, "witness answered without a new cosignature")
        return "".join(sig.to_line() for sig in new)

    def _post(self, body: bytes) -> tuple[int, str, bytes]:
        request = urllib.request.Request(  # noqa: S310 (the URL is operator configuration)
            self.url, data=body, method="POST", headers={"Content-Type": "text/plain; charset=utf-8"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return response.status, response.headers.get_content_type(), response.read(MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as exc:
            with exc:
                status, ctype, data = exc.code, exc.headers.get_content_type(), exc.read(MAX_RESPONSE_BYTES)
            if status >= 500:
                raise WitnessUnavailable(
                    WITNESS_UNAVAILABLE, f"witness failed ({status})", witness=self.url, status=status
                ) from exc
            return status, ctype, data
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            message = f"witness unreachable: {exc}"
            raise WitnessUnavailable(WITNESS_UNAVAILABLE, message, witness=self.url) from exc


def _conflict_size(status: int, content_type: str, body: bytes) -> int | None:
    """The witness's size from a 409 ``text/x.tlog.size`` answer; None for any other answer (a fork 409)."""
    if status != 409 or content_type != SIZE_CONTENT_TYPE:
        return None
    match = _SIZE.fullmatch(body.decode("ascii", "replace"))
    return int(match.group(1)) if match else None


def _snippet(body: bytes) -> str:
    return body[:200].decode("utf-8", "replace").strip()
