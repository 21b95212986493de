"""``bench/stack_floor.py`` does every step its docstring lists, so the floor ``bench/vault_in.py --floor`` reports
beside the vault is the cost of that work and not of less: the object is put with its checksum and locked, the
claim, the record and the log entry are written, a wrong digest changes nothing, and with its PDF work a
document that is not a PDF is refused before anything is written."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from storage.embedded_s3 import EmbeddedS3
from tests.helpers import bench_module, store_env
from tests.pdf_factory import make_pdf
from tests.signed_pdfs import valid as signed_pdf

FLOOR = bench_module("stack_floor")


def _env(embedded_s3: EmbeddedS3, database_url: str, *, pdf: bool) -> dict[str, str]:
    store = store_env(embedded_s3, uuid.uuid4().hex[:10])
    return {
        "EVAULT_FLOOR_PDF": "1" if pdf else "0",
        "EVAULT_FLOOR_BUCKET": store["EVAULT_S3_BUCKET"],  # made with Object Lock
        "EVAULT_FLOOR_DATABASE_URL": database_url,
        "EVAULT_FLOOR_S3_URL": store["EVAULT_S3_ENDPOINT"],
        "EVAULT_FLOOR_S3_ACCESS_KEY": store["EVAULT_S3_ACCESS_KEY"],
        "EVAULT_FLOOR_S3_SECRET_KEY": store["EVAULT_S3_SECRET_KEY"],
        "EVAULT_FLOOR_S3_REGION": embedded_s3.endpoint.region,
    }


@pytest.fixture
def floor(embedded_s3: EmbeddedS3, database_url: str) -> Iterator[Any]:
    made = FLOOR.Floor(_env(embedded_s3, database_url, pdf=True))
    try:
        yield made
    finally:
        made.engine.dispose()


def _post(client: TestClient[Any], path: str, body: bytes, digest: str | None = None) -> Any:
    headers = {"Content-Type": "application/pdf", "X-Content-SHA256": digest or hashlib.sha256(body).hexdigest()}
    return client.post(path, content=body, headers=headers)


def _counts(floor: Any) -> dict[str, int]:
    with floor.engine.connect() as connection:
        rows = {
            t.name: connection.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in FLOOR._META.sorted_tables
        }
        rows["log size"] = connection.execute(sa.select(FLOOR.LOG.c.size)).scalar_one()
    return rows


def test_an_upload_is_put_locked_and_recorded_with_a_log_entry(floor: Any) -> None:
    pdf = make_pdf(2, "floor")
    with TestClient(FLOOR.create_app(floor)) as client:
        answer = _post(client, "/vault-in-upload/k1", pdf)
        assert answer.status_code == 201, answer.text
        assert answer.json()["sha256"] == hashlib.sha256(pdf).hexdigest()
        assert answer.json()["leaf"] == 0
        assert _post(client, "/vault-in-signed/k2", signed_pdf()).status_code == 201
    head = floor.s3.head_object(Bucket=floor.bucket, Key="floor/k1.pdf", ChecksumMode="ENABLED")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ContentLength"] == len(pdf)
    assert floor.s3.get_object(Bucket=floor.bucket, Key="floor/k1.pdf")["Body"].read() == pdf
    assert _counts(floor) == {"floor_claim": 0, "floor_record": 2, "floor_log": 1, "floor_entry": 2, "log size": 2}


def test_a_wrong_digest_or_a_file_that_is_not_a_pdf_writes_nothing(floor: Any) -> None:
    pdf = make_pdf(1, "floor")
    with TestClient(FLOOR.create_app(floor)) as client:
        assert _post(client, "/vault-in-upload/k1", pdf, digest="00" * 32).status_code == 400
        assert _post(client, "/vault-in-upload/k2", b"not a pdf").status_code == 422
    assert _counts(floor) == {"floor_claim": 0, "floor_record": 0, "floor_log": 1, "floor_entry": 0, "log size": 0}
    listed = floor.s3.list_objects_v2(Bucket=floor.bucket, Prefix="floor/")
    assert listed.get("KeyCount", 0) == 0


def test_without_its_pdf_work_the_floor_moves_any_bytes(embedded_s3: EmbeddedS3, database_url: str) -> None:
    transport = FLOOR.Floor(_env(embedded_s3, database_url, pdf=False))
    try:
        with TestClient(FLOOR.create_app(transport)) as client:
            assert _post(client, "/vault-in-upload/k1", b"not a pdf").status_code == 201
        assert _counts(transport)["floor_record"] == 1
    finally:
        transport.engine.dispose()
