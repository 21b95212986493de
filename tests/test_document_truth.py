"""The OpenAPI document tells the truth about what the server accepts (what the contract test found).

A well-formed request the state forbids is a 409, not a 400 (a fuzzer and an integrator both read 400 as "your
request is malformed"); a value the document says is malformed is refused, even where the server has no use
for it; a limit the server enforces is stated in the document from the same constant.
"""

from __future__ import annotations

import re
from typing import Any

from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from vault.field_limits import LINE_PATTERN, MAX_TITLE, NOT_BLANK_LINE_PATTERN


def _code(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


def test_a_proof_for_a_tree_the_log_has_not_reached_is_a_conflict(client: Any, tenant: Any) -> None:
    _, headers = tenant
    create_envelope(client, headers)
    size = client.post(f"{API}/log/checkpoint", headers=headers).json()["size"]
    ahead = client.get(f"{API}/log/proof/consistency", params={"first": 0, "second": size + 5}, headers=headers)
    assert _code(ahead) == (409, "Log.SizeNotReached") and ahead.json()["details"]["log_size"] == size
    beyond = client.get(f"{API}/log/proof/inclusion", params={"leaf_index": 0, "tree_size": size + 1}, headers=headers)
    assert _code(beyond) == (409, "Log.SizeNotReached")
    backwards = client.get(f"{API}/log/proof/consistency", params={"first": 2, "second": 1}, headers=headers)
    assert _code(backwards) == (400, "Log.OutOfRange")


def test_vaulting_with_no_secured_party_anywhere_is_a_conflict(client: Any, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers, secured_party=None)
    response = upload(client, headers, envelope_id, make_pdf())
    assert _code(response) == (409, "Vault.SecuredPartyUnnamed")
    named = client.post(
        f"{API}/envelopes/{envelope_id}/vault-in-upload",
        files=[("document", ("a.pdf", make_pdf(), "application/pdf"))],
        data={"metadata": '{"secured_party": {"name": ""}}'},
        headers=headers,
    )
    assert named.status_code == 400  # a party named but unusable is the request's fault


def test_vaulting_what_was_staged_with_nothing_staged_is_a_conflict(client: Any, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    response = client.post(f"{API}/envelopes/{envelope_id}/vault-in-upload", json={"staged": True}, headers=headers)
    assert _code(response) == (409, "Staging.Empty")


def test_what_the_document_calls_malformed_is_refused(client: Any, tenant: Any) -> None:
    _, headers = tenant
    for value in ("0", "2026-01-01T00:00:00", "2026-01-01 00:00:00Z"):  # the parser alone would take these
        response = client.get(f"{API}/envelopes", params={"updated_before": value}, headers=headers)
        assert _code(response) == (400, "Request.InvalidField"), value
    assert client.get(f"{API}/envelopes", params={"updated_before": "2026-01-01T00:00:00Z"}, headers=headers).is_success
    envelope_id = create_envelope(client, headers)
    multipart = client.post(
        f"{API}/envelopes/{envelope_id}/upload",
        files=[("document", ("a.pdf", make_pdf(), "application/pdf"))],
        headers={**headers, "X-Content-SHA256": "not-hex"},
    )
    assert _code(multipart) == (400, "Request.InvalidHeader")
    named = client.post(
        f"{API}/envelopes/{envelope_id}/upload",
        params={"filename": "a\x01.pdf"},
        files=[("document", ("a.pdf", make_pdf(), "application/pdf"))],
        headers=headers,
    )
    assert _code(named) == (400, "Request.InvalidCharacter")
    long_void = client.post(f"{API}/envelopes/{envelope_id}/void", json={"reason": " " + "x" * 500}, headers=headers)
    assert _code(long_void) == (400, "Envelope.InvalidReason")  # 501 characters as sent, as the document says


def test_the_document_states_the_limits_from_the_same_constants(client: Any) -> None:
    document = client.get("/api/v2/openapi.json").json()
    models = document["components"]["schemas"]
    title = models["NewEnvelope"]["properties"]["title"]
    assert (title["maxLength"], title["pattern"]) == (MAX_TITLE, NOT_BLANK_LINE_PATTERN)
    party = models["NewEnvelope"]["properties"]["parties"]["items"]
    assert party["required"] == ["name"] and party["properties"]["email"]["pattern"] == LINE_PATTERN
    scheme = models["WebhookChange"]["properties"]["scheme"]
    assert [branch.get("enum") for branch in scheme["oneOf"]] == [["v1", "v1a"], None]  # or null: unchanged
    assert models["RetentionIn"]["properties"]["retain_until"]["format"] == "date-time"
    assert models["JsonValue"]["exclusiveMaximum"] == 2**53
    assert re.fullmatch(LINE_PATTERN, "Prêt été") and not re.fullmatch(LINE_PATTERN, "a\u202eb")
    operations = document["paths"]
    audit = operations["/api/v2/partner/envelopes/{envelope_id}/audit"]["get"]["responses"]["200"]
    assert "ETag" not in audit["headers"]  # advertised only where it is sent
    created = operations["/api/v2/partner/envelopes"]["post"]["responses"]
    assert {"ETag", "Location"} <= created["201"]["headers"].keys() and "413" in created
    links = created["201"]["links"]
    assert {"uploadDocument", "vaultInUpload", "vaultInSigned"} <= links.keys()
