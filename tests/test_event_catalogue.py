"""One event catalogue: every event the code can append is declared, nothing else names events by string,
an undeclared type or data outside its schema is refused before anything is written, and docs/events.md is it."""

from __future__ import annotations

import ast
import re
from dataclasses import replace
from pathlib import Path

import pytest

from compliance.errors import EvaultError
from compliance.ledger import event_catalogue
from compliance.ledger.event_catalogue import (
    ASSIGNEE_CHANGED,
    CATALOGUE,
    ENVELOPE_CREATED,
    ENVELOPE_VOIDED,
    ORG_CREATED,
    EventType,
    markdown_table,
)
from compliance.ledger.events import Actor, append_event, log_size
from storage.ids import utcnow
from vault.envelopes import NewEnvelope, create_envelope
from vault.runtime import Runtime
from vault.tenancy import create_organisation

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE_FILE = ROOT / "compliance" / "ledger" / "event_catalogue.py"
# Declared for the conditions (an assignee change is read by condition 2) before any route appends it.
NOT_YET_APPENDED = {ASSIGNEE_CHANGED.name}


def _sources() -> list[Path]:
    return [p for package in ("vault", "compliance") for p in (ROOT / package).rglob("*.py") if p != CATALOGUE_FILE]


def _appended() -> dict[str, list[str]]:
    """Each append_event call's event_type argument, as written, by file: it must name a catalogue constant."""
    found: dict[str, list[str]] = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            called = getattr(node, "func", None)
            if isinstance(node, ast.Call) and getattr(called, "id", getattr(called, "attr", "")) == "append_event":
                arg = next((k.value for k in node.keywords if k.arg == "event_type"), None)
                if arg is not None:
                    found.setdefault(str(path.relative_to(ROOT)), []).append(ast.unparse(arg))
    return found


def test_every_event_the_code_appends_is_a_catalogue_declaration() -> None:
    appended = _appended()
    assert len(appended) >= 12, appended  # the scan sees the call sites (vault/* and compliance/*)
    names: set[str] = set()
    for path, args in appended.items():
        for arg in args:
            declared = getattr(event_catalogue, arg, None)
            assert isinstance(declared, EventType), f"{path}: event_type={arg} is not a catalogue declaration"
            names.add(declared.name)
    assert names | NOT_YET_APPENDED == set(CATALOGUE), "declared but appended nowhere"


def test_no_event_name_is_spelled_outside_the_catalogue() -> None:
    literal = re.compile(r"[\"']([a-z]+\.[a-z_]+)[\"']")
    for path in _sources():
        spelled = set(literal.findall(path.read_text())) & set(CATALOGUE)
        assert not spelled, f"{path.relative_to(ROOT)} names {sorted(spelled)}: use the catalogue"


def test_docs_table_is_the_catalogue() -> None:
    text = (ROOT / "docs" / "events.md").read_text()
    match = re.search(r"<!-- events:start -->\n(.*?)\n<!-- events:end -->", text, re.S)
    assert match is not None, "docs/events.md lacks the table markers"
    assert match.group(1).strip() == markdown_table(), "regenerate: python -m compliance.ledger.event_catalogue"


def test_schemas_are_closed_and_typed() -> None:
    assert ENVELOPE_VOIDED.schema_errors({"reason": "duplicate"}) == []
    assert ENVELOPE_VOIDED.schema_errors({}) == ["missing reason"]
    assert ENVELOPE_VOIDED.schema_errors({"reason": 3}) == ["reason is not string"]
    assert ENVELOPE_VOIDED.schema_errors({"reason": "x", "by": "me"}) == ["undeclared key by"]
    assert event_catalogue.MAP_ROOT.schema_errors({"map_root": "ab", "log_size_mapped": True, "version": 1}) == [
        "log_size_mapped is not integer"
    ]
    assert ENVELOPE_VOIDED.schema_errors([]) == ["data is not an object"]
    created = {"kind": "paper", "title": "Loan", "external_id": None, "secured_party": None}
    committed = {"subject": "sub_" + "a" * 20, "commitment": "ab" * 32}
    assert ENVELOPE_CREATED.schema_errors({**created, "parties": [committed]}) == []
    clear = {**created, "parties": [{"name": "Ada Borrower", "email": "ada@example.com"}]}
    assert ENVELOPE_CREATED.schema_errors(clear) == [
        "parties holds something other than commitments: personal data stays out of the log"
    ]


def test_undeclared_events_and_bad_data_are_refused_and_nothing_is_written(runtime: Runtime) -> None:
    with runtime.db.session() as session:
        org_id = create_organisation(session, "Catalogue Org").id
        envelope_id = create_envelope(session, Actor(org_id), NewEnvelope(kind="paper", title="Loan")).id
    with runtime.db.read_session() as session:
        size = log_size(session, org_id)
    lookalike = replace(ENVELOPE_VOIDED)  # the same fields, but not the catalogue's declaration
    attempts: list[tuple[EventType, dict[str, object], str | None, str]] = [
        (EventType("test.note", "not declared", None, True, {}), {}, envelope_id, "Event.Undeclared"),
        (lookalike, {"reason": "x"}, envelope_id, "Event.Undeclared"),
        (ENVELOPE_VOIDED, {"reason": None}, envelope_id, "Event.InvalidData"),
        (ENVELOPE_VOIDED, {"reason": "x", "email": "ada@example.com"}, envelope_id, "Event.InvalidData"),
        (ENVELOPE_VOIDED, {"reason": "x"}, None, "Event.InvalidData"),  # an envelope event without its envelope
        (ORG_CREATED, {"name": "x"}, envelope_id, "Event.InvalidData"),  # an organisation event in a chain
    ]
    for kind, data, envelope, code in attempts:
        with pytest.raises(EvaultError) as refused, runtime.db.session() as session:
            append_event(
                session, actor=Actor(org_id), event_type=kind, occurred_at=utcnow(), data=data, envelope_id=envelope
            )
        assert refused.value.code == code, (kind.name, data)
    with runtime.db.read_session() as session:
        assert log_size(session, org_id) == size
