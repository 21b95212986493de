"""Export packages made in one running vault and addressed to itself: the record is released for a transfer to
this vault's own id, so one runtime is both the sending and the receiving vault, and ``evault import`` runs
in-process against it (the two-process hand-off is tests/test_vault_transfer.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlmodel import SQLModel

from storage.keys import AUTHORITATIVE_PREFIX
from tests.helpers import API, create_envelope, upload
from vault.runtime import Runtime


def vault_pem(client: Any, path: Path) -> Path:
    """The vault's checkpoint key as its well-known document publishes it, written to ``path`` (--trusted-key)."""
    keys = client.get("/.well-known/evault/keys").json()["keys"]
    path.write_text(str(next(k["pem"] for k in keys if k["use"] == "checkpoint")))
    return path


def release_to_self(client: Any, runtime: Runtime, headers: dict[str, str], pdf: bytes) -> str:
    """A new envelope with ``pdf`` vaulted, released for a transfer to this very vault: its id."""
    envelope_id = create_envelope(client, headers)
    vaulted = upload(client, headers, envelope_id, pdf)
    assert vaulted.status_code == 201, vaulted.text
    body = {"reason": "transfer", "transferee": {"vault_id": runtime.settings.evidence.custodian_id}}
    out = client.post(f"{API}/envelopes/{envelope_id}/vault-out", json=body, headers=headers)
    assert out.status_code == 200, out.text
    return envelope_id


def export_package(client: Any, headers: dict[str, str], envelope_id: str) -> bytes:
    answer = client.get(f"{API}/envelopes/{envelope_id}/export-package", headers=headers)
    assert answer.status_code == 200, answer.text
    package: bytes = answer.content
    return package


def vault_state(runtime: Runtime) -> dict[str, Any]:
    """Everything an import could change: every row of every table (the log's entries and sizes among them) and
    every object version and delete marker in the authoritative bucket."""
    state: dict[str, Any] = {}
    with runtime.db.read_session() as session:
        for table in SQLModel.metadata.sorted_tables:
            state[table.name] = sorted(repr(tuple(row)) for row in session.execute(select(table)))
    state["objects"] = sorted((e.key, e.version_id) for e in runtime.authoritative.list_entries(AUTHORITATIVE_PREFIX))
    return state
