"""The stack's floor for a vault-in: the least a vault-in can do with the packages the design card binds.

``bench/vault_in.py --floor`` serves this beside the vault and sends both the same uploads, so that the CPU a
vault-in costs can be read against what Litestar, uvicorn, boto3, SQLAlchemy, pypdf and pyHanko cost for the
same request with none of the vault's own code between them. Each request:

1. is received by Litestar on uvicorn (httptools, as the vault), the 1 MiB body read whole;
2. is hashed (SHA-256) and checked against the client's ``X-Content-SHA256``;
3. with ``EVAULT_FLOOR_PDF=1``: is opened by pypdf, its page count read, and written out again from that reader
   (the least a vetting and a copy rehearsal can be); on ``/vault-in-signed/``, its signatures are also found by
   pyHanko and validated (``validate_pdf_signature``, no trust roots, nothing fetched);
4. claims its key in one write transaction (a row inserted);
5. is put with ``ChecksumSHA256`` and a COMPLIANCE lock, then read back with a HEAD (the lock check);
6. is recorded in one write transaction: the claim deleted, a record inserted, the log's size counted up and an
   entry of a few fields inserted;
7. is answered with a small JSON body (201).

Steps 3-6 run in a worker thread (``anyio.to_thread``), as the vault's blocking work does. Left out, so that this
is a floor and not a rival: authentication, rate limits and per-key caps, the envelope's look-up, the vetting's
object scan and limits, the stamp on the rehearsal's copy, the hash chain, tiles and outbox, idempotency, metrics.

Settings come from the environment (``EVAULT_FLOOR_*``, set by ``bench/vault_in.py``); run as
``python bench/stack_floor.py``. Its tables (``floor_*``) are made in the database it is given.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import os
import secrets
from typing import Any

import anyio
import sqlalchemy as sa
import uvicorn
from litestar import Litestar, Request, Response, get, post
from litestar.params import FromPath
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pypdf import PdfReader, PdfWriter
from pypdf.errors import PyPdfError

from storage.s3_client import make_s3_client

_META = sa.MetaData()
CLAIMS = sa.Table("floor_claim", _META, sa.Column("key", sa.String(64), primary_key=True))
RECORDS = sa.Table(
    "floor_record",
    _META,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)
LOG = sa.Table("floor_log", _META, sa.Column("id", sa.Integer, primary_key=True), sa.Column("size", sa.Integer))
ENTRIES = sa.Table(
    "floor_entry",
    _META,
    sa.Column("leaf", sa.Integer, primary_key=True),
    sa.Column("entry", sa.LargeBinary, nullable=False),
)


def _engine(url: str) -> sa.Engine:
    """SQLite as the vault opens it (WAL, synchronous NORMAL, writes under BEGIN IMMEDIATE); PostgreSQL as is."""
    if not url.startswith("sqlite"):
        return sa.create_engine(url)
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "isolation_level": None})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(connection: Any, _record: Any) -> None:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Floor:
    """The floor's state: its S3 client, its engine and its tables, made once per process as the vault's are, so
    that a request pays only for its own work."""

    def __init__(self, env: dict[str, str]) -> None:
        self.pdf = env.get("EVAULT_FLOOR_PDF", "1") == "1"
        self.bucket = env["EVAULT_FLOOR_BUCKET"]
        self.s3 = make_s3_client(
            env["EVAULT_FLOOR_S3_URL"],
            env["EVAULT_FLOOR_S3_ACCESS_KEY"],
            env["EVAULT_FLOOR_S3_SECRET_KEY"],
            env["EVAULT_FLOOR_S3_REGION"],
        )
        self.engine = _engine(env["EVAULT_FLOOR_DATABASE_URL"])
        _META.create_all(self.engine)
        with self.engine.begin() as connection:
            if connection.execute(sa.select(LOG.c.id)).first() is None:
                connection.execute(LOG.insert().values(id=1, size=0))
        self.retain_until = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)

    def vault_in(self, key: str, body: bytes, digest: bytes, signed: bool) -> dict[str, Any]:
        if self.pdf:
            reader = PdfReader(io.BytesIO(body))
            if not reader.pages:
                raise ValueError("no pages")
            PdfWriter(clone_from=reader).write(io.BytesIO())
            if signed:
                context = ValidationContext(trust_roots=[], allow_fetching=False)
                for signature in PdfFileReader(io.BytesIO(body)).embedded_signatures:
                    validate_pdf_signature(signature, context)
        with self.engine.begin() as connection:
            connection.execute(CLAIMS.insert().values(key=key))
        name = f"floor/{key}.pdf"
        self.s3.put_object(
            Bucket=self.bucket,
            Key=name,
            Body=body,
            ContentType="application/pdf",
            ChecksumSHA256=base64.b64encode(digest).decode(),
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=self.retain_until,
        )
        if self.s3.head_object(Bucket=self.bucket, Key=name).get("ObjectLockMode") != "COMPLIANCE":
            raise RuntimeError("the object is not locked")
        record = secrets.token_hex(10)
        now = dt.datetime.now(dt.UTC)
        with self.engine.begin() as connection:
            connection.execute(CLAIMS.delete().where(CLAIMS.c.key == key))
            connection.execute(RECORDS.insert().values(id=record, key=key, sha256=digest.hex(), at=now))
            size = connection.execute(LOG.update().values(size=LOG.c.size + 1).returning(LOG.c.size)).scalar_one()
            entry = json.dumps({"key": key, "record": record, "sha256": digest.hex(), "at": now.isoformat()})
            connection.execute(ENTRIES.insert().values(leaf=size - 1, entry=entry.encode()))
        return {"id": record, "key": key, "sha256": digest.hex(), "leaf": size - 1}


def create_app(floor: Floor) -> Litestar:
    async def receive(key: str, request: Request[Any, Any, Any], signed: bool) -> Response[dict[str, Any]]:
        body = await request.body()
        digest = hashlib.sha256(body).digest()
        if digest.hex() != request.headers.get("x-content-sha256"):
            return Response({"code": "Upload.DigestMismatch"}, status_code=400)
        try:
            answer = await anyio.to_thread.run_sync(floor.vault_in, key, body, digest, signed)
        except (PyPdfError, ValueError) as exc:  # before anything is written: the PDF work comes first
            return Response({"code": "Document.Unreadable", "message": str(exc)}, status_code=422)
        return Response(answer, status_code=201)

    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @post("/vault-in-upload/{key:str}")
    async def paper(key: FromPath[str], request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        return await receive(key, request, signed=False)

    @post("/vault-in-signed/{key:str}")
    async def signed(key: FromPath[str], request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        return await receive(key, request, signed=True)

    return Litestar([paper, signed, health])


def main() -> None:
    env = dict(os.environ)
    config = uvicorn.Config(
        create_app(Floor(env)),
        host="127.0.0.1",
        port=int(env["EVAULT_FLOOR_PORT"]),
        http="httptools",
        log_level="warning",
        access_log=False,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
