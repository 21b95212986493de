"""Driving an e-sign ceremony over HTTP, as an integrator and as each recipient would (no browser)."""

from __future__ import annotations

import base64
import io
import struct
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pypdf import PdfReader

from tests.helpers import API
from tests.pdf_factory import make_pdf
from tests.ports import aux_port

SIGNERS = [
    {"name": "Ada Borrower", "email": "ada@example.com", "role": "signer", "order": 1},
    {"name": "Bob Cosigner", "email": "bob@example.com", "role": "signer", "order": 2},
]
VIEWER = {"name": "Vera Viewer", "email": "vera@example.com", "role": "viewer", "order": 1}


def fields(page: int) -> list[dict[str, Any]]:
    return [
        {"type": "signature", "page": page, "x": 72, "y": 100, "width": 200, "height": 40},
        {"type": "date", "page": page, "x": 300, "y": 100, "width": 100, "height": 20},
    ]


def roster(viewer: bool = True) -> list[dict[str, Any]]:
    people = [{**SIGNERS[0], "fields": fields(1)}, {**SIGNERS[1], "fields": fields(2)}]
    return people + ([VIEWER] if viewer else [])


def create_esign(client: Any, headers: dict[str, str], recipients: list[dict[str, Any]], **extra: Any) -> str:
    body = {
        "kind": "esign",
        "title": "Loan 2002",
        "external_id": f"loan-{uuid.uuid4().hex[:12]}",
        "parties": [{"name": "Ada Borrower"}],
        "secured_party": {"name": "First Bank", "id": "bank-1"},
        "recipients": recipients,
        **extra,
    }
    response = client.post(f"{API}/envelopes", json=body, headers=headers)
    assert response.status_code == 201, response.text
    envelope_id: str = response.json()["id"]
    return envelope_id


def upload_document(client: Any, headers: dict[str, str], envelope_id: str, pdf: bytes | None = None) -> Any:
    return client.post(
        f"{API}/envelopes/{envelope_id}/upload",
        content=pdf or make_pdf(pages=2),
        headers={**headers, "Content-Type": "application/pdf"},
    )


def sent_envelope(
    client: Any, headers: dict[str, str], recipients: list[dict[str, Any]] | None = None, **extra: Any
) -> str:
    envelope_id = create_esign(client, headers, roster() if recipients is None else recipients, **extra)
    assert upload_document(client, headers, envelope_id).status_code == 201
    response = client.post(f"{API}/envelopes/{envelope_id}/send", headers=headers)
    assert response.status_code == 200, response.text
    return envelope_id


def links(client: Any, headers: dict[str, str], envelope_id: str) -> dict[str, str]:
    """Each recipient's link path (``/sign/<token>``), by email."""
    response = client.get(f"{API}/envelopes/{envelope_id}/signing-links", headers=headers)
    assert response.status_code == 200, response.text
    return {link["email"]: urlsplit(link["url"]).path for link in response.json()["links"]}


def sign(client: Any, link: str, name: str) -> Any:
    return client.post(f"{link}/sign", json={"signature": {"type": "typed", "name": name}})


def consent_and_sign(client: Any, link: str, name: str) -> Any:
    assert client.get(f"{link}/state").status_code == 200
    assert client.post(f"{link}/consent").status_code == 200
    assert client.get(f"{link}/document").status_code == 200
    return sign(client, link, name)


@dataclass
class SealCheck:
    intact: bool
    valid: bool
    trusted: bool
    whole_file: bool
    docmdp_ok: bool
    signatures: int
    last_page_text: str
    certify: bool


def check_seal(data: bytes, trust_root: Any) -> SealCheck:
    reader = PdfFileReader(io.BytesIO(data))
    signatures = reader.embedded_signatures
    status = validate_pdf_signature(signatures[-1], ValidationContext(trust_roots=[trust_root], allow_fetching=False))
    text = PdfReader(io.BytesIO(data)).pages[-1].extract_text()
    return SealCheck(
        intact=status.intact,
        valid=status.valid,
        trusted=status.trusted,
        whole_file=status.coverage.name == "ENTIRE_FILE",
        docmdp_ok=bool(status.docmdp_ok),
        signatures=len(signatures),
        last_page_text=text,
        certify=signatures[-1].sig_object.get("/Reference") is not None,
    )


@dataclass
class Mailbox:
    """What the local SMTP server received: (recipient address, its From, Subject and decoded body)."""

    received: list[tuple[str, str]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        message = message_from_bytes(content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        text = f"From: {message['From']}\nSubject: {message['Subject']}\n\n{message.get_content()}"
        for to in envelope.rcpt_tos:
            self.received.append((to, text))
        return "250 OK"

    def to(self, address: str) -> list[str]:
        return [text for rcpt, text in self.received if rcpt == address]


def smtp_port() -> int:
    """A free port of this pass's ``ceremony`` range (tests/ports.py)."""
    return aux_port("ceremony")


@contextmanager
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = smtp_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def png_data_url(width: int = 60, height: int = 20, colour_type: int = 6) -> tuple[str, bytes]:
    """An 8-bit PNG of a diagonal stroke, its rows filtered with each of PNG's five filters in turn (as encoders
    mix them), as a data URL; and its raw unfiltered pixels, to compare a decoder's result with."""
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    rows = []
    for y in range(height):
        row = bytearray()
        for x in range(width):
            ink = 255 if abs(x - y * width // height) < 3 else 0
            row += bytes([(x * 7 + y) % 256, 20, 40, ink][4 - bpp :] if bpp > 1 else [ink])
        rows.append(bytes(row))
    raw, previous = bytearray(), bytes(width * bpp)
    for y, row in enumerate(rows):
        kind = y % 5
        filtered = bytearray()
        for i, value in enumerate(row):
            left = row[i - bpp] if i >= bpp else 0
            up = previous[i]
            corner = previous[i - bpp] if i >= bpp else 0
            guess = [0, left, up, (left + up) >> 1, _paeth(left, up, corner)][kind]
            filtered.append((value - guess) & 0xFF)
        raw += bytes([kind]) + filtered
        previous = row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")
    )
    return "data:image/png;base64," + base64.b64encode(png).decode(), b"".join(rows)
