"""The witness over HTTP: ``POST /add-checkpoint`` as C2SP tlog-witness specifies it, and ``evault witness``.

The app is a pass-through: the raw body goes to ``Witness.add_checkpoint`` (run in a worker thread, since it
fsyncs) and its status, plain-text body and content type come back unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread
from litestar import Litestar, Request, post
from litestar.datastructures import State
from litestar.response import Response

from compliance.ledger.note import NoteVerifier
from compliance.ledger.vault_key import load_or_create_key
from compliance.witness.cosignature import CosignatureSigner
from compliance.witness.cosigner import Witness

MAX_REQUEST_BYTES = 64 * 1024  # 63 proof lines and a checkpoint with many signatures fit well within


def create_witness_app(witness: Witness) -> Litestar:
    @post("/add-checkpoint", status_code=200)
    async def add_checkpoint(request: Request[Any, Any, State]) -> Response[bytes]:
        body = await request.body()
        status, content, content_type = await anyio.to_thread.run_sync(witness.add_checkpoint, body)
        # Set the header itself: Litestar would add "; charset=utf-8" to text/x.tlog.size.
        headers = {"content-type": content_type}
        return Response(content, status_code=status, media_type=content_type, headers=headers)

    return Litestar([add_checkpoint], request_max_body_size=MAX_REQUEST_BYTES, openapi_config=None)


def parse_log_keys(log_vkeys: Sequence[str]) -> dict[str, NoteVerifier]:
    """``vkey`` (the key's name is the log's origin, the usual convention) or ``origin vkey``."""
    logs: dict[str, NoteVerifier] = {}
    for entry in log_vkeys:
        origin, _, vkey = entry.strip().rpartition(" ")
        verifier = NoteVerifier.from_vkey(vkey)
        origin = origin.strip() or verifier.name
        if origin in logs:
            raise ValueError(f"log origin {origin!r} is configured twice")
        logs[origin] = verifier
    return logs


def build_witness(state_dir: Path, key_path: Path, log_vkeys: Sequence[str], *, name: str) -> Witness:
    """The witness ``serve_witness`` runs, without the server (for tests and for printing its vkey)."""
    key = load_or_create_key(Path(key_path), name, create=True)
    return Witness(Path(state_dir), CosignatureSigner(name, key.signer), parse_log_keys(log_vkeys))


def serve_witness(
    state_dir: Path,
    key_path: Path,
    log_vkeys: list[str],
    host: str,
    port: int,
    *,
    name: str = "evault.local/witness",
) -> None:
    """Run a witness until interrupted (``evault witness``).

    state_dir: where the per-log state (``witness-state.json``) and ``evidence/`` of refused forks live;
        created if missing. Must survive restarts: an empty state would cosign a fork.
    key_path: the witness's Ed25519 private key, PEM PKCS#8; generated (0600) on first start when missing.
        Use a key for this witness only (a v1 cosignature does not commit to the witness name).
    log_vkeys: the logs to witness, each a note verifier key ``name+hash+base64`` whose name is the log's
        origin, or ``<origin> <vkey>`` when the origin differs from the key name.
    host, port: where to listen (plain HTTP; put TLS in front for anything but localhost).
    name: the witness key name in its cosignature lines, a schema-less URL by convention.

    The witness's own vkey (type 0x04), which checkpoint clients pin, is printed at start.
    """
    import uvicorn

    witness = build_witness(state_dir, key_path, log_vkeys, name=name)
    print(f"witness vkey: {witness.signer.verifier().vkey}", flush=True)
    uvicorn.run(create_witness_app(witness), host=host, port=port, log_level="info")
