"""Each documented 200/201 schema is what the walk-through's real answers are: every field, and nothing more."""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator

from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf

JSON_OPERATIONS = (
    ("post", "/envelopes", "201"),
    ("get", "/envelopes", "200"),
    ("get", "/envelopes/{envelope_id}", "200"),
    ("get", "/envelopes/{envelope_id}/status", "200"),
    ("post", "/envelopes/{envelope_id}/vault-in-upload", "201"),
    ("get", "/envelopes/{envelope_id}/vault/signed-url", "200"),
    ("get", "/envelopes/{envelope_id}/vault/copy/signed-url", "200"),
    ("get", "/envelopes/{envelope_id}/proof", "200"),
    ("get", "/envelopes/{envelope_id}/compliance", "200"),
    ("get", "/envelopes/{envelope_id}/vault/certificate", "200"),
    ("get", "/envelopes/{envelope_id}/audit", "200"),
    ("get", "/log/checkpoint", "200"),
    ("post", "/envelopes/{envelope_id}/amendments", "201"),
    ("get", "/envelopes/{envelope_id}/amendments", "200"),
    ("post", "/envelopes/{envelope_id}/paper-in-attestation", "201"),
    ("post", "/envelopes/{envelope_id}/vault-out", "200"),
    ("get", "/envelopes/{envelope_id}/release-receipt", "200"),
    ("post", "/envelopes/{envelope_id}/void", "200"),
)


def _validator(document: dict[str, Any], method: str, path: str, status: str) -> Draft202012Validator:
    operation = document["paths"][API + path][method]
    schema = operation["responses"][status]["content"]["application/json"]["schema"]
    return Draft202012Validator({**schema, "components": document["components"]})


def test_documented_answers_are_the_real_answers(client: Any, tenant: Any) -> None:
    _, headers = tenant
    document = client.get("/api/v2/openapi.json").json()
    vaulted = create_envelope(client, headers)
    voided = create_envelope(client, headers)
    answers: dict[tuple[str, str], Any] = {}

    def call(method: str, path: str, envelope_id: str | None = None, **kwargs: Any) -> None:
        url = API + path.replace("{envelope_id}", envelope_id or "")
        response = client.request(method.upper(), url, headers={**headers, **kwargs.pop("headers", {})}, **kwargs)
        assert response.status_code in (200, 201), (method, path, response.text)
        answers[(method, path)] = response.json()

    call("post", "/envelopes", json={"kind": "paper", "title": "Loan 7"})
    call("get", "/envelopes", params={"limit": 2})
    answers[("post", "/envelopes/{envelope_id}/vault-in-upload")] = upload(
        client, headers, vaulted, make_pdf(pages=1)
    ).json()
    for path in (
        "/envelopes/{envelope_id}",
        "/envelopes/{envelope_id}/status",
        "/envelopes/{envelope_id}/vault/signed-url",
        "/envelopes/{envelope_id}/vault/copy/signed-url",
        "/envelopes/{envelope_id}/proof",
        "/envelopes/{envelope_id}/compliance",
        "/envelopes/{envelope_id}/vault/certificate",
        "/envelopes/{envelope_id}/audit",
    ):
        call("get", path, vaulted)
    call("get", "/log/checkpoint")
    amendment = {"type": "modification", "data": {"rate": "5%"}}
    files = [("metadata", (None, json.dumps(amendment), None)), ("document", ("m.pdf", make_pdf(), "application/pdf"))]
    call("post", "/envelopes/{envelope_id}/amendments", vaulted, files=files)
    call("get", "/envelopes/{envelope_id}/amendments", vaulted)
    attestation = {"original": "held", "at": "2026-01-02T03:04:05Z", "attested_by": "Carol", "location": "Room 3"}
    call("post", "/envelopes/{envelope_id}/paper-in-attestation", vaulted, json=attestation)
    call("post", "/envelopes/{envelope_id}/vault-out", vaulted, json={"reason": "payoff"})
    call("get", "/envelopes/{envelope_id}/release-receipt", vaulted)
    call("post", "/envelopes/{envelope_id}/void", voided, json={"reason": "withdrawn by the borrower"})

    for method, path, status in JSON_OPERATIONS:
        errors = [e.message for e in _validator(document, method, path, status).iter_errors(answers[(method, path)])]
        assert errors == [], f"{method.upper()} {path}: {errors[:3]}"
