"""Spooled documents leave nothing behind: with no spool memory at all, every uploaded document and every
staged document read back for vault-in is a file in the private spool directory, removed when the request ends,
whether it succeeded or was refused."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from vault.upload_spool import SpooledDocument, spool_dir

MiB = 1024 * 1024


@pytest.fixture
def vault_env(vault_env: dict[str, str]) -> dict[str, str]:
    return {**vault_env, "EVAULT_UPLOAD_SPOOL_MEMORY_BYTES": "0"}


@pytest.fixture
def spools(monkeypatch: pytest.MonkeyPatch) -> tuple[list[SpooledDocument], list[SpooledDocument]]:
    """(every spool made, every spool closed) while the test runs."""
    opened: list[SpooledDocument] = []
    closed: list[SpooledDocument] = []
    real_init, real_close = SpooledDocument.__init__, SpooledDocument.close

    def init(self: SpooledDocument, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        opened.append(self)

    def close(self: SpooledDocument) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(SpooledDocument, "__init__", init)
    monkeypatch.setattr(SpooledDocument, "close", close)
    return opened, closed


def test_spool_files_are_removed_after_staging_vaulting_and_refusals(
    client: Any, tenant: Any, spools: tuple[list[SpooledDocument], list[SpooledDocument]]
) -> None:
    _, headers = tenant
    opened, closed = spools
    envelope_id = create_envelope(client, headers)
    pdf = make_pdf(size_bytes=2 * MiB)
    staged = client.post(
        f"{API}/envelopes/{envelope_id}/upload", content=pdf, headers={**headers, "Content-Type": "application/pdf"}
    )
    assert staged.status_code == 201, staged.text
    assert list(spool_dir().iterdir()) == []
    refused = upload(client, headers, create_envelope(client, headers), b"%PDF-1.7 not really a PDF")
    assert (refused.status_code, refused.json()["code"]) == (400, "Document.Malformed")
    assert list(spool_dir().iterdir()) == []
    vaulted = client.post(f"{API}/envelopes/{envelope_id}/vault-in-upload", headers=headers)
    assert vaulted.status_code == 201, vaulted.text
    (doc,) = vaulted.json()["vault"]["documents"]
    assert doc["sha256"] == hashlib.sha256(pdf).hexdigest() and doc["size"] == len(pdf)
    assert list(spool_dir().iterdir()) == []
    # the staged upload, the refused one, the empty vault-in body and the staged read-back: each one closed
    assert len(opened) == 4 and all(spool in closed for spool in opened)


@pytest.mark.parametrize(
    "metadata, code",
    [("not json", "Request.InvalidMetadata"), ('{"a": ' * 40 + "1" + "}" * 40, "Request.InvalidMetadata")],
    ids=["not-json", "too-deep"],
)
def test_a_multipart_body_refused_after_its_documents_arrived_leaves_no_spool(
    client: Any, tenant: Any, spools: tuple[list[SpooledDocument], list[SpooledDocument]], metadata: str, code: str
) -> None:
    _, headers = tenant
    opened, closed = spools
    envelope_id = create_envelope(client, headers)
    files = [("document", ("a.pdf", make_pdf(), "application/pdf")), ("document", ("b.pdf", make_pdf(), "x/y"))]
    response = client.post(
        f"{API}/envelopes/{envelope_id}/vault-in-upload", files=files, data={"metadata": metadata}, headers=headers
    )
    assert (response.status_code, response.json()["code"]) == (400, code), response.text
    assert len(opened) == 2 and all(spool in closed for spool in opened)
    assert list(spool_dir().iterdir()) == []
