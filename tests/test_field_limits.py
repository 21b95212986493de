"""Field limits over HTTP, one table of bad inputs, on SQLite and PostgreSQL alike (EVAULT_TEST_DATABASE_URL).

Every case is refused with its stable code naming the field, and nothing is written: no envelope row, no event.
Before these limits, a 100,000-character title, an integer above 2**53, nesting 2,000 deep and a NUL (on
PostgreSQL) were 500s, and a 42 MiB envelope of 120,000 parties went into the permanent log.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import select

from storage.models import Envelope, Event, VaultRecord
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from vault.runtime import Runtime

GOOD: dict[str, Any] = {"kind": "paper", "title": "Loan 1001", "secured_party": {"name": "First Bank"}}


def _deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


# case id -> (raw JSON body of POST /envelopes, status, code, details.field or None)
ENVELOPE_CASES: dict[str, tuple[str, int, str, str | None]] = {
    "title-100k": (json.dumps({**GOOD, "title": "t" * 100_000}), 413, "Request.TooLarge", None),
    "title-301": (json.dumps({**GOOD, "title": "t" * 301}), 400, "Request.FieldTooLong", "title"),
    "title-empty": (json.dumps({**GOOD, "title": "  "}), 400, "Envelope.InvalidTitle", "title"),
    "title-nul": (json.dumps({**GOOD, "title": "a\u0000b"}), 400, "Request.InvalidCharacter", "title"),
    "title-control": (json.dumps({**GOOD, "title": "a\u001bb"}), 400, "Request.InvalidCharacter", "title"),
    "title-newline": (json.dumps({**GOOD, "title": "a\nb"}), 400, "Request.InvalidCharacter", "title"),
    # msgspec refuses a lone surrogate escape itself (PostgreSQL could not store it)
    "title-lone-surrogate": ('{"kind":"paper","title":"a\\ud800b"}', 400, "Request.Invalid", None),
    "external-id-201": (json.dumps({**GOOD, "external_id": "x" * 201}), 400, "Request.FieldTooLong", "external_id"),
    "integer-above-2**53": (
        json.dumps({**GOOD, "metadata": {"n": 2**53 + 1}}),
        400,
        "Request.NumberOutOfRange",
        "metadata.n",
    ),
    "integer-beyond-64-bit": (
        json.dumps({**GOOD, "metadata": {"n": 10**30}}),
        400,
        "Request.NumberOutOfRange",
        "metadata.n",
    ),
    "float-huge": (json.dumps({**GOOD, "metadata": {"x": 1e300}}), 400, "Request.NumberOutOfRange", "metadata.x"),
    "nesting-2000": ('{"kind":"paper","title":"t","metadata":' + _deep(2000) + "}", 400, "Request.TooDeep", "body"),
    "metadata-17-deep": (
        '{"kind":"paper","title":"t","metadata":' + _deep(17) + "}",
        400,
        "Request.TooDeep",
        "metadata",
    ),
    "metadata-nul": (
        json.dumps({**GOOD, "metadata": {"k": "a\u0000"}}),
        400,
        "Request.InvalidCharacter",
        "metadata.k",
    ),
    "metadata-key-nul": (
        json.dumps({**GOOD, "metadata": {"k\u0000": 1}}),
        400,
        "Request.InvalidCharacter",
        "metadata.<key>",
    ),
    "metadata-too-large": (
        json.dumps({**GOOD, "metadata": {"b": "x" * 20_000}}),
        400,
        "Request.FieldTooLong",
        "metadata.b",
    ),
    "metadata-too-large-in-total": (
        json.dumps({**GOOD, "metadata": {f"k{i}": "x" * 900 for i in range(20)}}),
        400,
        "Request.FieldTooLong",
        "metadata",
    ),
    "parties-101": (
        json.dumps({**GOOD, "parties": [{"name": f"p{i}"} for i in range(101)]}),
        400,
        "Request.TooMany",
        "parties",
    ),
    "parties-120000": (
        json.dumps({**GOOD, "parties": [{"name": f"p{i}"} for i in range(120_000)]}),
        413,
        "Request.TooLarge",
        None,
    ),
    "party-name-201": (
        json.dumps({**GOOD, "parties": [{"name": "n" * 201}]}),
        400,
        "Request.FieldTooLong",
        "parties[0].name",
    ),
    "party-email-control": (
        json.dumps({**GOOD, "parties": [{"name": "n", "email": "a@b\u0007"}]}),
        400,
        "Request.InvalidCharacter",
        "parties[0].email",
    ),
    "party-role-201": (
        json.dumps({**GOOD, "parties": [{"name": "n", "role": "r" * 201}]}),
        400,
        "Request.FieldTooLong",
        "parties[0].role",
    ),
    "secured-party-name-nul": (
        json.dumps({**GOOD, "secured_party": {"name": "Bank\u0000"}}),
        400,
        "Request.InvalidCharacter",
        "secured_party.name",
    ),
}


def _counts(runtime: Runtime, org_id: str) -> tuple[int, int]:
    with runtime.db.read_session() as session:
        envelopes = session.exec(select(func.count()).select_from(Envelope).where(Envelope.org_id == org_id)).one()
        events = session.exec(select(func.count()).select_from(Event)).one()
    return int(envelopes), int(events)


@pytest.mark.parametrize("case", sorted(ENVELOPE_CASES))
def test_bad_envelope_fields_are_refused_with_their_code_and_nothing_is_written(
    client: Any, runtime: Runtime, tenant: Any, case: str
) -> None:
    org_id, headers = tenant
    body, status, code, field = ENVELOPE_CASES[case]
    before = _counts(runtime, org_id)
    response = client.post(
        f"{API}/envelopes", content=body.encode(), headers={**headers, "Content-Type": "application/json"}
    )
    assert (response.status_code, response.json()["code"]) == (status, code), response.text[:300]
    if field is not None:
        assert response.json()["details"]["field"] == field
    assert _counts(runtime, org_id) == before


def test_limits_leave_good_envelopes_alone(client: Any, tenant: Any) -> None:
    _, headers = tenant
    body = {
        **GOOD,
        "title": "t" * 300,
        "external_id": "x" * 200,
        "parties": [{"name": "n" * 200, "email": "e" * 200, "role": "r" * 200}] * 10,
        "metadata": json.loads(_deep(15)) | {"n": 2**53 - 1, "note": "line one\nline two\ttab"},
    }
    response = client.post(f"{API}/envelopes", json=body, headers=headers)
    assert response.status_code == 201, response.text


# case id -> (vault-out body, code, details.field)
RELEASE_CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    "note-1001": ({"reason": "other", "note": "n" * 1001}, "Request.FieldTooLong", "note"),
    "note-nul": ({"reason": "other", "note": "why\u0000"}, "Request.InvalidCharacter", "note"),
    "transferee-id-201": (
        {"reason": "transfer", "transferee": {"vault_id": "v" * 201}},
        "Request.FieldTooLong",
        "transferee.vault_id",
    ),
    "transferee-number": (
        {"reason": "transfer", "transferee": {"vault_id": "v", "n": 2**60}},
        "Request.NumberOutOfRange",
        "transferee.n",
    ),
}


@pytest.mark.parametrize("case", sorted(RELEASE_CASES))
def test_bad_release_fields_are_refused_and_nothing_is_written(
    client: Any, runtime: Runtime, tenant: Any, case: str
) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    body, code, field = RELEASE_CASES[case]
    before = _counts(runtime, org_id)
    response = client.post(f"{API}/envelopes/{envelope_id}/vault-out", json=body, headers=headers)
    assert (response.status_code, response.json()["code"]) == (400, code), response.text[:300]
    assert response.json()["details"]["field"] == field
    assert _counts(runtime, org_id) == before
    with runtime.db.read_session() as session:
        record = session.exec(select(VaultRecord).where(VaultRecord.envelope_id == envelope_id)).one()
    assert record.released_at is None
