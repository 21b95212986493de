"""What one vault-in costs in round trips: SQL statements, transactions and S3 requests, pinned.

A vault-in's CPU goes mostly to work per round trip (docs/benchmarks.md), so a change that adds a statement, a
transaction or an S3 request to the hot path shows here first. The numbers are exact: lower them when a change
saves a round trip, and raise them only with a reason. The promises stay visible in the list: the claim and the
record are separate transactions around the put, and the lock is read back after it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from storage.db import Database
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf, make_signed_pdf
from vault.runtime import Runtime


@contextmanager
def counted(db: Database, s3_client: Any = None) -> Iterator[list[str]]:
    """Every SQL statement (SQLite's explicit BEGINs left out: PostgreSQL's drivers begin implicitly), every
    transaction begun ("BEGIN") and committed ("COMMIT"; a read ends without one) on the database's engines, and
    every S3 request ("S3 <operation>") of ``s3_client``, if given."""
    seen: list[str] = []

    def statement(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        if not sql.startswith("BEGIN"):
            seen.append("SQL " + " ".join(sql.split())[:90])

    def begin(_conn: Any) -> None:
        seen.append("BEGIN")

    def commit(_conn: Any) -> None:
        seen.append("COMMIT")

    def s3(event_name: str, **_: Any) -> None:
        seen.append("S3 " + event_name.rsplit(".", 1)[-1])

    engines = {id(e): e for e in (db.engine, db.read_engine)}.values()
    hooks = [
        (engine, name, fn)
        for engine in engines
        for name, fn in (("before_cursor_execute", statement), ("begin", begin), ("commit", commit))
    ]
    for engine, name, fn in hooks:
        event.listen(engine, name, fn)
    if s3_client is not None:
        s3_client.meta.events.register("before-call.s3", s3)
    try:
        yield seen
    finally:
        for engine, name, fn in hooks:
            event.remove(engine, name, fn)
        if s3_client is not None:
            s3_client.meta.events.unregister("before-call.s3", s3)


def tally(seen: list[str]) -> dict[str, int]:
    kinds = Counter("SQL" if line.startswith("SQL") else line for line in seen)
    return dict(sorted(kinds.items()))


def _with_shared_caps(runtime: Runtime, counts: dict[str, int]) -> dict[str, int]:
    """On PostgreSQL an upload also takes and gives back its key's and organisation's slots shared by every
    process (vault/slot_leases.py): one read of both caps' live slots, one transaction with a conditional upsert
    per cap, then one delete of both. SQLite is one process."""
    if runtime.db.url.startswith("sqlite"):
        return counts
    return {**counts, "BEGIN": counts["BEGIN"] + 3, "COMMIT": counts["COMMIT"] + 2, "SQL": counts["SQL"] + 4}


def test_one_vault_in_costs_what_it_did(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    pdf = make_pdf(pages=2)
    with counted(runtime.db, runtime.s3_client) as seen:
        response = upload(client, headers, envelope_id, pdf)
    assert response.status_code == 201, response.text
    # 5 transactions: the key and its rate counter (2), the envelope look (1), the claim (1), the record (1);
    # 3 of them write. The statements: docs/benchmarks.md lists them (the chain head is read before the log's
    # lock, to know which log, and again under it, since a hand-off may have moved the chain meanwhile). The
    # claim is one upsert, the record deletes it by its id, and the answer reads only the MIN and the parties.
    expected = {"BEGIN": 5, "COMMIT": 3, "S3 HeadObject": 1, "S3 PutObject": 1, "SQL": 20}
    assert tally(seen) == _with_shared_caps(runtime, expected), "\n".join(seen)
    # The order of the promises: claim committed before the put, lock read back after it, record after that.
    marks = ("COMMIT", "S3 ", "SQL INSERT INTO vault_claim ", "SQL INSERT INTO vault_record ")
    order = [line.split(" (")[0] for line in seen if line.startswith(marks)]
    claimed = order.index("SQL INSERT INTO vault_claim")  # after the rate counter's (and shared slots') commits
    assert order[claimed : claimed + 6] == [
        "SQL INSERT INTO vault_claim",
        "COMMIT",
        "S3 PutObject",
        "S3 HeadObject",
        "SQL INSERT INTO vault_record",
        "COMMIT",
    ], "\n".join(seen)


def test_an_idempotent_vault_in_adds_its_key_and_a_replay_writes_nothing(
    client: Any, runtime: Runtime, tenant: Any
) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    pdf = make_pdf(pages=2)
    keyed = {**headers, "Idempotency-Key": uuid.uuid4().hex}
    with counted(runtime.db, runtime.s3_client) as first:
        assert upload(client, keyed, envelope_id, pdf).status_code == 201
    with counted(runtime.db, runtime.s3_client) as again:
        replay = upload(client, keyed, envelope_id, pdf)
    assert replay.status_code == 201 and replay.headers.get("Idempotent-Replayed") == "true"
    assert hashlib.sha256(pdf).hexdigest() in replay.text
    # The key is claimed in a transaction of its own and completed in the record's.
    expected = {"BEGIN": 6, "COMMIT": 4, "S3 HeadObject": 1, "S3 PutObject": 1, "SQL": 24}
    assert tally(first) == _with_shared_caps(runtime, expected), "\n".join(first)
    assert tally(again) == _with_shared_caps(runtime, {"BEGIN": 3, "COMMIT": 2, "SQL": 3}), "\n".join(again)


@pytest.mark.parametrize("flow", ["upload", "signed"])
def test_the_answer_shaped_from_the_written_rows_is_the_envelope_read_back(
    client: Any, runtime: Runtime, tenant: Any, flow: str
) -> None:
    """The 201 is built from what the record's transaction wrote, not read back: it must be exactly what a read
    of the envelope shows afterwards (documents, signatures, parties, ETag), for several documents too."""
    _, headers = tenant
    kind = "paper" if flow == "upload" else "esign"
    envelope_id = create_envelope(client, headers, kind=kind, secured_party=None)
    pdfs = [make_pdf(pages=1, text="Note"), make_pdf(pages=2, text="Agreement")]
    if flow == "signed":
        pdfs = [make_signed_pdf(), make_signed_pdf()]
    response = client.post(
        f"{API}/envelopes/{envelope_id}/vault-in-{flow}",
        headers=headers,
        files=[("document", (f"d{i}.pdf", pdf, "application/pdf")) for i, pdf in enumerate(pdfs)],
        data={"metadata": '{"secured_party": {"name": "Second Bank"}}'},
    )
    assert response.status_code == 201, response.text
    answer = response.json()
    read = client.get(f"{API}/envelopes/{envelope_id}", headers=headers)
    assert read.status_code == 200, read.text
    assert answer.pop("replayed") is False
    assert answer == read.json()
    assert response.headers["ETag"] == read.headers["ETag"]
    assert [d["sha256"] for d in answer["vault"]["documents"]] == [hashlib.sha256(p).hexdigest() for p in pdfs]
    assert answer["parties"][0]["name"] == "Ada Borrower" and answer["secured_party"] == {"name": "Second Bank"}
    signatures = [d["signatures"] for d in answer["vault"]["documents"]]
    assert all(s is None for s in signatures) if flow == "upload" else all(s for s in signatures)
