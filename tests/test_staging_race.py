"""An upload racing "vault what was staged": acknowledged means vaulted, or the upload was refused.

Staging and vaulting are serialised per envelope. The vault-in pins the staged set under the envelope's lock
when it commits its claim; an upload that commits after that meets the claim (409) or a vaulted envelope (409),
and one that committed before it is in the vault-in (the vault-in re-reads the staged set when it changed).
Before this, 4 of 16 trials on PostgreSQL acknowledged an upload (201, ``envelope.document_staged``) that the
vault-in then left out: the ledger read "staged, staged, vaulted_in" for a record of one document.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlmodel import col, select

from storage.models import Event, StagedDocument, VaultClaim
from tests.helpers import API, create_envelope, together
from tests.pdf_factory import make_pdf
from vault.runtime import Runtime

TRIALS = 16
REFUSED = {"Envelope.InvalidTransition", "Vault.InProgress"}


def _stage(client: Any, headers: dict[str, str], envelope_id: str, data: bytes) -> Any:
    extra = {"Content-Type": "application/pdf", "X-Content-SHA256": hashlib.sha256(data).hexdigest()}
    return client.post(f"{API}/envelopes/{envelope_id}/upload", content=data, headers={**headers, **extra})


def _vault_staged(client: Any, headers: dict[str, str], envelope_id: str) -> Any:
    return client.post(f"{API}/envelopes/{envelope_id}/vault-in-upload", headers=headers)


def _ledger(runtime: Runtime, envelope_id: str) -> list[Event]:
    with runtime.db.read_session() as session:
        query = select(Event).where(Event.envelope_id == envelope_id).order_by(col(Event.chain_seq))
        return list(session.exec(query))


def test_an_upload_racing_vault_staged_is_vaulted_or_refused(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    outcomes: list[tuple[int, int]] = []
    for trial in range(TRIALS):
        envelope_id = create_envelope(client, headers)
        first, racing = make_pdf(text=f"first {trial}"), make_pdf(text=f"racing {trial}")
        assert _stage(client, headers, envelope_id, first).status_code == 201
        staged, vaulted = together(
            lambda e=envelope_id, pdf=racing: _stage(client, headers, e, pdf),
            lambda e=envelope_id: _vault_staged(client, headers, e),
        )
        outcomes.append((staged.status_code, vaulted.status_code))
        if staged.status_code != 201:
            assert (staged.status_code, staged.json()["code"]) in {(409, code) for code in REFUSED}, staged.text
        if vaulted.status_code != 201:
            # The staged set changed under it every time it looked: nothing was written; vault it now.
            assert (vaulted.status_code, vaulted.json()["code"]) == (409, "Vault.InProgress"), vaulted.text
            vaulted = _vault_staged(client, headers, envelope_id)
            assert vaulted.status_code == 201, vaulted.text
        acknowledged = [first] + ([racing] if staged.status_code == 201 else [])
        record = [d["sha256"] for d in vaulted.json()["vault"]["documents"]]
        assert record == [hashlib.sha256(pdf).hexdigest() for pdf in acknowledged], (trial, staged.text)

        events = _ledger(runtime, envelope_id)
        kinds = [e.event_type for e in events]
        assert kinds == ["envelope.created"] + ["envelope.document_staged"] * len(acknowledged) + ["vault.vaulted_in"]
        data = [json.loads(e.entry)["data"] for e in events]
        staged_in_ledger = [d["sha256"] for entry in data[1:-1] for d in entry["documents"]]
        vaulted_in_ledger = [d["sha256"] for d in data[-1]["documents"]]
        assert staged_in_ledger == vaulted_in_ledger == record
        with runtime.db.read_session() as session:
            assert session.exec(select(StagedDocument).where(StagedDocument.envelope_id == envelope_id)).all() == []
    with runtime.db.read_session() as session:
        assert session.exec(select(VaultClaim)).all() == []
    print("outcomes (upload, vault-in):", outcomes)
