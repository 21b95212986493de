"""Characters that change how text reads are refused in every kept field and filename (both databases).

The last round kept C1 controls, U+2028 and right-to-left overrides in titles, notes and filenames, so a
certificate or a listing could show ``invoice<RLO>fdp.exe`` as ``invoiceexe.pdf``. Each one is now a 400
``Request.InvalidCharacter`` naming the field and the character, and nothing is written.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import quote

from sqlalchemy import func
from sqlmodel import select

from storage.models import Envelope, Event, StagedDocument
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from vault.runtime import Runtime

# C1 (NEL, CSI), bidi embedding/override/isolate/marks, Arabic letter mark, line and paragraph separators.
INVISIBLE = ["\u0085", "\u009b", "\u202a", "\u202e", "\u2066", "\u2069", "\u200e", "\u200f", "\u061c", "\u2028"]
INVISIBLE += ["\u2029", "\u007f"]
GOOD: dict[str, Any] = {"kind": "paper", "title": "Loan 1001", "secured_party": {"name": "First Bank"}}


def _counts(runtime: Runtime, org_id: str) -> tuple[int, int, int]:
    with runtime.db.read_session() as session:
        envelopes = session.exec(select(func.count()).select_from(Envelope).where(Envelope.org_id == org_id)).one()
        events = session.exec(select(func.count()).select_from(Event)).one()
        staged = session.exec(select(func.count()).select_from(StagedDocument)).one()
    return int(envelopes), int(events), int(staged)


def _refused(response: Any, field: str, char: str) -> None:
    assert response.status_code == 400, (repr(char), field, response.text[:300])
    body = response.json()
    assert body["code"] == "Request.InvalidCharacter", body
    assert body["details"]["field"] == field and body["details"]["character"] == f"U+{ord(char):04X}"


def test_envelope_fields_refuse_invisible_characters(client: Any, runtime: Runtime, tenant: Any) -> None:
    org_id, headers = tenant
    before = _counts(runtime, org_id)
    for char in INVISIBLE:
        for body, field in [
            ({**GOOD, "title": f"Loan{char}1001"}, "title"),
            ({**GOOD, "external_id": f"x{char}"}, "external_id"),
            ({**GOOD, "parties": [{"name": f"Ann{char}"}]}, "parties[0].name"),
            ({**GOOD, "secured_party": {"name": f"Bank{char}"}}, "secured_party.name"),
            ({**GOOD, "metadata": {"memo": f"a{char}b"}}, "metadata.memo"),
            ({**GOOD, "metadata": {f"k{char}": 1}}, "metadata.<key>"),
        ]:
            response = client.post(f"{API}/envelopes", content=json.dumps(body), headers=headers)
            _refused(response, field, char)
    assert _counts(runtime, org_id) == before
    # What stays allowed: accents, other scripts, no-break space, and tab/line breaks in free text.
    kept = {**GOOD, "title": "Prêt été 日本 قرض\u00a01", "metadata": {"memo": "line one\nline two\ttab"}}
    assert client.post(f"{API}/envelopes", json=kept, headers=headers).status_code == 201


def test_vault_out_note_refuses_invisible_characters(client: Any, runtime: Runtime, tenant: Any) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    before = _counts(runtime, org_id)
    for char in INVISIBLE:
        body = {"reason": "other", "note": f"paid{char}off"}
        _refused(client.post(f"{API}/envelopes/{envelope_id}/vault-out", json=body, headers=headers), "note", char)
    assert _counts(runtime, org_id) == before


def test_filenames_refuse_control_and_bidi_characters(client: Any, runtime: Runtime, tenant: Any) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    pdf = make_pdf()
    sent = {**headers, "Content-Type": "application/pdf", "X-Content-SHA256": hashlib.sha256(pdf).hexdigest()}
    before = _counts(runtime, org_id)
    for char in [*INVISIBLE, "\u001b", "\u0000"]:
        name = quote(f"invoice{char}fdp.exe", safe="")
        for route in ("upload", "vault-in-upload"):
            response = client.post(f"{API}/envelopes/{envelope_id}/{route}?filename={name}", content=pdf, headers=sent)
            _refused(response, "documents[0].filename", char)
        if char == "\u0000":
            continue  # the multipart parser drops a NUL from a part's filename
        multipart = client.post(
            f"{API}/envelopes/{envelope_id}/vault-in-upload",
            files={"document": (f"scan{char}.pdf", pdf, "application/pdf")},
            headers=headers,
        )
        _refused(multipart, "documents[0].filename", char)
    assert _counts(runtime, org_id) == before
    plain = client.post(f"{API}/envelopes/{envelope_id}/upload?filename=Prêt%20été.pdf", content=pdf, headers=sent)
    assert plain.status_code == 201, plain.text
    assert plain.json()["staged_documents"][0]["filename"] == "Prêt été.pdf"
