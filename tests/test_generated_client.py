"""An integrator's client, generated from the served OpenAPI document with openapi-python-client, does the whole
walk-through with nothing but the generated code (seed 002's advice to integrators).

0.29 parses only the JSON form of an answer, so the certificate's PDF and the audit's CSV are requested with the
generated request builder (``_get_kwargs``) and read as bytes from the generated client's own HTTP client.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.pdf_factory import make_pdf

GENERATOR = Path(sys.executable).with_name("openapi-python-client")


def _generate(client: Any, where: Path) -> str:
    spec = where / "openapi.json"
    spec.write_text(json.dumps(client.get("/api/v2/openapi.json").json()))
    package = f"evault_generated_{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(spec), "--meta", "none", "--output-path", str(where / package)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return package


@pytest.fixture
def generated(client: Any, tmp_path: Path) -> Any:
    package = _generate(client, tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        yield lambda name: importlib.import_module(f"{package}.{name}")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith(package)]:
            del sys.modules[name]


def test_the_walk_through_with_only_generated_code(client: Any, tenant: Any, generated: Any) -> None:
    _, headers = tenant
    api = generated("client").AuthenticatedClient(
        base_url=str(client.base_url), token=headers["X-API-Key"], auth_header_name="X-API-Key", prefix=""
    )
    client.headers.update(headers)  # the generated client sends through the app's in-process HTTP client
    api.set_httpx_client(client)
    models, File = generated("models"), generated("types").File

    def op(group: str, name: str) -> Any:
        return generated(f"api.{group}.{name}")

    def create(title: str) -> Any:
        body = models.NewEnvelope.from_dict(
            {"kind": "paper", "title": title, "secured_party": {"name": "First Bank", "id": "bank-1"}}
        )
        made = op("envelopes", "create_envelope").sync(client=api, body=body)
        assert isinstance(made, models.EnvelopeView), made
        return made

    staged, direct, voided = create("Loan 1"), create("Loan 2"), create("Loan 3")
    raw, second = make_pdf(pages=1), make_pdf(pages=2)
    upload = op("envelopes", "upload_document")
    assert isinstance(
        upload.sync(staged.id, client=api, body=File(payload=io.BytesIO(raw), file_name="note.pdf")),
        models.EnvelopeView,
    )
    form = models.UploadDocumentFilesBody(document=[File(payload=io.BytesIO(second), file_name="rider.pdf")])
    assert isinstance(upload.sync(staged.id, client=api, body=form), models.EnvelopeView)
    vaulted = op("vault", "vault_in_upload").sync(staged.id, client=api)  # no body: vault what was staged
    assert isinstance(vaulted, models.VaultInView), vaulted
    assert sorted(d.sha256 for d in vaulted.vault.documents) == sorted(
        hashlib.sha256(b).hexdigest() for b in (raw, second)
    )
    direct_form = models.VaultInUploadFilesBody(
        document=[File(payload=io.BytesIO(raw), file_name="note.pdf")],
        metadata=models.VaultInUploadFilesBodyMetadata.from_dict({"loan_number": "1002"}),
    )
    assert isinstance(op("vault", "vault_in_upload").sync(direct.id, client=api, body=direct_form), models.VaultInView)

    status = op("envelopes", "get_envelope_status").sync(staged.id, client=api)
    assert status.vault_state == "vaulted"
    first = op("envelopes", "list_envelopes").sync(client=api, limit=2)
    rest = op("envelopes", "list_envelopes").sync(client=api, limit=2, cursor=first.next_cursor)
    assert {e.id for e in first.items + rest.items} == {staged.id, direct.id, voided.id}

    urls = op("vault", "get_authoritative_url").sync(staged.id, client=api)
    assert len(urls.documents) == 2 and all(u.authoritative for u in urls.documents)
    copies = op("vault", "issue_copy").sync(staged.id, client=api)
    assert len(copies.copies) == 2 and not any(c.authoritative for c in copies.copies)
    bundle = op("transparency_log", "get_proof_bundle").sync(staged.id, client=api)
    assert bundle.format_ == "evault-proof-bundle/v2" and bundle.map_.proof.siblings
    assert isinstance(op("transparency_log", "get_checkpoint").sync(client=api), models.CheckpointView)
    certificate = op("compliance", "get_certificate").sync(staged.id, client=api)
    assert certificate.certificate.to_dict()["envelope"]["id"] == staged.id
    verdict = op("compliance", "check_compliance").sync(staged.id, client=api)
    assert len(verdict.conditions) == 6
    trail = op("compliance", "get_audit_trail").sync(staged.id, client=api)
    assert [e.type_ for e in trail.events][:1] == ["envelope.created"]
    http = api.get_httpx_client()
    pdf = http.request(**op("compliance", "get_certificate")._get_kwargs(staged.id, format_="pdf"))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    csv = http.request(**op("compliance", "get_audit_trail")._get_kwargs(staged.id, format_="csv"))
    header, *rows = csv.text.splitlines()
    assert csv.status_code == 200 and header.split(",")[:3] == ["envelope_id", "seq", "leaf_index"]
    assert len(rows) == len(trail.events)

    void_body = models.VoidIn(reason="withdrawn by the borrower")
    assert op("envelopes", "void_envelope").sync(voided.id, client=api, body=void_body).status == "voided"
    released = op("vault", "vault_out").sync(
        staged.id, client=api, body=models.VaultOutIn(reason=models.VaultOutInReason("payoff"))
    )
    assert released.vault.state == "released"
