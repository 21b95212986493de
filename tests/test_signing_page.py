"""The signing page over HTTP: its headers, the order consent -> document, the access check, and embed tokens."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from jsonschema import Draft202012Validator

from storage.ids import utcnow
from storage.models import Recipient
from tests.helpers import API, create_envelope
from tests.pdf_factory import make_pdf
from vault.access_check import access_code
from vault.embed import embed_token
from vault.embed_origins import set_allowed_origins
from vault.runtime import Runtime

PAGES = 3
NO_FRAMING_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
FIELD = {"type": "signature", "page": 1, "x": 72, "y": 72, "width": 200, "height": 40}


def sent_envelope(client: Any, headers: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """An e-sign envelope with two signers in order, its document staged, sent: (id, its signing links)."""
    recipients = [
        {"name": "Ada Borrower", "email": "ada@example.com", "role": "signer", "order": 1, "fields": [FIELD]},
        {"name": "Bob Cosigner", "email": "bob@example.com", "role": "signer", "order": 2, "fields": [FIELD]},
    ]
    envelope_id = create_envelope(client, headers, kind="esign", recipients=recipients)
    pdf = make_pdf(pages=PAGES)
    staged = client.post(
        f"{API}/envelopes/{envelope_id}/upload", content=pdf, headers={**headers, "Content-Type": "application/pdf"}
    )
    assert staged.status_code == 201, staged.text
    sent = client.post(f"{API}/envelopes/{envelope_id}/send", headers=headers)
    assert sent.status_code == 200, sent.text
    links = client.get(f"{API}/envelopes/{envelope_id}/signing-links", headers=headers)
    assert links.status_code == 200, links.text
    return envelope_id, sorted(links.json()["links"], key=lambda link: link["order"])


def path(url: str) -> str:
    return urlsplit(url).path


def token_of(url: str) -> str:
    return path(url).rsplit("/", 1)[1]


def assert_strict(response: Any, frame_ancestors: str = "frame-ancestors 'none'") -> None:
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"].endswith("; " + frame_ancestors)
    assert "unsafe-inline" not in response.headers["content-security-policy"]


def test_the_page_is_static_html_with_strict_headers_and_no_token(client: Any, tenant: Any) -> None:
    _, headers = tenant
    _, links = sent_envelope(client, headers)
    url = path(links[0]["url"])

    page = client.get(url)

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == NO_FRAMING_CSP
    assert page.headers["x-frame-options"] == "DENY"
    assert_strict(page)
    assert token_of(url) not in page.text  # the script reads it from location: nothing to leak from the HTML
    assert "<script>" not in page.text and " on" + "click=" not in page.text and "style=" not in page.text
    scripts = re.findall(r'<script src="([^"]+)"', page.text)
    styles = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page.text)
    assert scripts == ["/signing-assets/signing.js"] and styles == ["/signing-assets/signing.css"]
    script, style = client.get(scripts[0]), client.get(styles[0])
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    assert "fetch(" in script.text and "http" not in re.sub(r"//.*", "", script.text)  # same origin only

    # the JSON actions under the link carry the same protections
    state = client.get(url + "/state")
    assert state.status_code == 200
    assert_strict(state)
    assert state.headers["content-security-policy"] == "default-src 'none'; " + NO_FRAMING_CSP.split("; ", 1)[1]


@pytest.mark.parametrize("token", ["rcp_aaaaaaaaaaaaaaaaaaaa." + "A" * 43, "nonsense", "rcp_x.e1.a.b"])
def test_a_forged_link_gets_an_html_refusal(client: Any, tenant: Any, token: str) -> None:
    refused = client.get(f"/sign/{token}")
    assert refused.status_code == 404 and refused.headers["content-type"].startswith("text/html")
    assert "Signing.LinkNotFound" in refused.text and "<script" not in refused.text
    assert refused.headers["content-security-policy"] == NO_FRAMING_CSP
    assert_strict(refused)


def test_no_page_of_the_document_before_consent_and_the_access_check(client: Any, tenant: Any) -> None:
    _, headers = tenant
    _, links = sent_envelope(client, headers)
    url = path(links[0]["url"])

    before = client.get(url + "/pages/1")
    assert (before.status_code, before.json()["code"]) == (409, "Signing.ConsentRequired")
    image = client.get(url + "/access-check.png")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert image.headers["content-type"] == "image/png"
    wrong = client.post(
        url + "/access-check", json={"code": "000000" if access_code(token_of(url)) != "000000" else "1"}
    )
    assert (wrong.status_code, wrong.json()["code"]) == (400, "Signing.AccessCodeMismatch")
    assert client.post(url + "/access-check", json={"code": 123}).status_code == 400
    assert client.post(url + "/access-check", json={"code": access_code(token_of(url))}).status_code == 204
    assert client.get(url + "/pages/1").status_code == 409  # the check is not consent: nothing shown yet

    assert client.post(url + "/consent").status_code == 200
    shown = [client.get(f"{url}/pages/{n}") for n in range(1, PAGES + 1)]
    assert all(r.status_code == 200 and r.content.startswith(b"\x89PNG") for r in shown)
    assert_strict(shown[0])
    width = int.from_bytes(shown[0].content[16:20], "big")
    assert width == 1000  # IHDR: a screen's width, whatever the page box
    assert shown[0].content != shown[1].content  # each page its own rendering
    beyond = client.get(f"{url}/pages/{PAGES + 1}")
    assert (beyond.status_code, beyond.json()["code"]) == (404, "Signing.PageNotFound")
    assert client.get(f"{url}/pages/0").status_code == 404


def _mint(client: Any, headers: dict[str, str], envelope_id: str, recipient_id: str) -> Any:
    return client.post(
        f"{API}/embed/token", json={"envelope_id": envelope_id, "recipient_id": recipient_id}, headers=headers
    )


def test_an_embed_token_opens_the_same_page_framed_only_from_allowed_origins(
    client: Any, tenant: Any, runtime: Runtime
) -> None:
    org_id, headers = tenant
    envelope_id, links = sent_envelope(client, headers)
    first = links[0]

    minted = _mint(client, headers, envelope_id, first["recipient_id"])

    assert minted.status_code == 201, minted.text
    answer = minted.json()
    assert set(answer) == {"token", "url", "expires_at"}
    assert path(answer["url"]) == f"/sign/{answer['token']}" and answer["token"] != token_of(first["url"])
    document = client.get("/api/v2/openapi.json").json()
    schema = document["paths"][f"{API}/embed/token"]["post"]["responses"]["201"]["content"]["application/json"]
    assert (
        list(Draft202012Validator({**schema["schema"], "components": document["components"]}).iter_errors(answer)) == []
    )
    lifetime = (utcnow() - timedelta(seconds=0)).timestamp()
    assert 0 < int(answer["token"].split(".")[1][1:]) - lifetime <= runtime.settings.ceremony.embed_ttl_seconds + 1

    embedded = path(answer["url"])
    page = client.get(embedded)
    assert page.status_code == 200 and page.headers["content-security-policy"] == NO_FRAMING_CSP  # no origin set

    with runtime.db.session() as session:
        set_allowed_origins(session, org_id, ["https://loans.example.com", "http://localhost:3000"])
    page = client.get(embedded)
    assert page.status_code == 200
    assert_strict(page, "frame-ancestors http://localhost:3000 https://loans.example.com")
    assert "x-frame-options" not in page.headers
    emailed = client.get(path(first["url"]))  # an emailed link is never framed, whatever the organisation allows
    assert emailed.headers["content-security-policy"] == NO_FRAMING_CSP

    # the same actions, through the embed token
    state = client.get(embedded + "/state")
    assert state.status_code == 200 and state.json()["recipient"]["id"] == first["recipient_id"]
    assert client.post(embedded + "/consent").status_code == 200
    assert client.get(embedded + "/pages/1").status_code == 200
    signed = client.post(embedded + "/sign", json={"signature": {"type": "typed", "name": "Ada Borrower"}})
    assert signed.status_code == 200, signed.text
    used = client.get(embedded + "/state")
    assert (used.status_code, used.json()["code"]) == (409, "Signing.LinkUsed")
    again = _mint(client, headers, envelope_id, first["recipient_id"])
    assert (again.status_code, again.json()["code"]) == (409, "Signing.LinkUsed")


def test_embed_tokens_are_refused_when_forged_expired_or_foreign(
    client: Any, tenant: Any, runtime: Runtime, make_key: Any
) -> None:
    _, headers = tenant
    envelope_id, links = sent_envelope(client, headers)
    second = links[1]
    token = _mint(client, headers, envelope_id, second["recipient_id"]).json()["token"]

    rid, expiry, nonce, mac = token.split(".")
    for forged in (
        f"{rid}.{expiry}.{nonce}.{'A' * 43}",
        f"{rid}.e{int(expiry[1:]) + 3600}.{nonce}.{mac}",  # a later end under the old MAC
        f"{links[0]['recipient_id']}.{expiry}.{nonce}.{mac}",  # another recipient under this one's MAC
    ):
        refused = client.get(f"/sign/{forged}/state")
        assert (refused.status_code, refused.json()["code"]) == (404, "Signing.LinkNotFound"), forged

    with runtime.db.read_session() as session:
        recipient = session.get(Recipient, second["recipient_id"])
        assert recipient is not None
        stale = embed_token(runtime.link_secret, recipient, utcnow() - timedelta(seconds=1))
    expired = client.get(f"/sign/{stale}/state")
    assert (expired.status_code, expired.json()["code"]) == (410, "Signing.LinkExpired")
    assert client.get(f"/sign/{stale}").status_code == 410

    # the second signer's embed token works, and the order still holds
    assert client.post(f"/sign/{token}/consent").status_code == 200
    early = client.post(f"/sign/{token}/sign", json={"signature": {"type": "typed", "name": "Bob"}})
    assert (early.status_code, early.json()["code"]) == (409, "Signing.NotYourTurn")

    # another organisation cannot mint for this envelope, and nobody for a recipient of another envelope
    _, other = make_key()
    foreign = _mint(client, {"X-API-Key": other}, envelope_id, second["recipient_id"])
    assert (foreign.status_code, foreign.json()["code"]) == (404, "Envelope.NotFound")
    other_envelope, _ = sent_envelope(client, headers)
    stray = _mint(client, headers, other_envelope, second["recipient_id"])
    assert (stray.status_code, stray.json()["code"]) == (404, "Recipient.NotFound")
    draft = create_envelope(client, headers, kind="esign", recipients=[{"name": "Cy", "email": "cy@example.com"}])
    drafted = client.get(f"{API}/envelopes/{draft}", headers=headers).json()["recipients"][0]["id"]
    unsent = _mint(client, headers, draft, drafted)
    assert (unsent.status_code, unsent.json()["code"]) == (409, "Ceremony.NotSent")
    paper = create_envelope(client, headers)
    assert _mint(client, headers, paper, drafted).json()["code"] == "Ceremony.NotEsign"
    _, reader = make_key(["envelopes:read", "envelopes:write"])
    assert _mint(client, {"X-API-Key": reader}, envelope_id, second["recipient_id"]).status_code == 403
    bad = client.post(f"{API}/embed/token", json={"envelope_id": envelope_id}, headers=headers)
    assert bad.status_code == 400

    voided = client.post(f"{API}/envelopes/{envelope_id}/void", json={"reason": "withdrawn"}, headers=headers)
    assert voided.status_code == 200, voided.text
    closed = _mint(client, headers, envelope_id, second["recipient_id"])
    assert (closed.status_code, closed.json()["code"]) == (410, "Signing.EnvelopeClosed")
    assert client.get(f"/sign/{token}/state").status_code == 410
