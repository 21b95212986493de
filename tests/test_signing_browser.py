"""A real browser signs: Debian's chromium, driven by Playwright, against the served API.

Two signers in order open the links a local SMTP server received, pass the access check, consent, adopt a
signature (the first types it, the second draws it on the canvas with the mouse) and sign. Then: the sealed PDF
under pyHanko, the vaulted record, the audit trail, and the webhooks a local receiver got, verified with the
``standardwebhooks`` package. A second test frames an embed URL from an origin the organisation did not allow,
and chromium refuses it (and loads it once the origin is allowed).

chromium comes from apt (scripts/test.sh installs it); ``playwright install`` is never run. Ports: the range
``signing_browser`` of tests/ports.py; the SMTP server's as the ceremony tests choose it.
"""

from __future__ import annotations

import email
import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright
from standardwebhooks.webhooks import Webhook

from compliance.ledger.event_catalogue import VAULTED_IN
from tests.ceremony_helpers import Mailbox, check_seal, smtp_server
from tests.helpers import API, free_port, serving
from tests.pdf_factory import make_pdf
from tests.ports import port_range
from tests.webhook_receiver import Receiver
from vault.access_check import access_code
from vault.api.app import create_app
from vault.embed_origins import set_allowed_origins
from vault.runtime import Runtime
from vault.webhooks.events import WEBHOOK_EVENTS

pytestmark = [pytest.mark.once, pytest.mark.s3]

CHROMIUM = "/usr/bin/chromium"
PORTS = port_range("signing_browser")  # the API in the first 20, the framing page in the last 10
SIGNERS = [("Ada Borrower", "ada@example.com"), ("Bob Cosigner", "bob@example.com")]
FIELD = {"type": "signature", "page": 1, "x": 72, "y": 72, "width": 220, "height": 40}


def link_for(mailbox: Mailbox, address: str, timeout: float = 30.0) -> str:
    """The signing link in the first email the local SMTP server received for ``address``."""
    deadline = time.monotonic() + timeout
    while not mailbox.to(address):
        assert time.monotonic() < deadline, f"no email to {address} in {timeout} s"
        time.sleep(0.1)
    body = email.message_from_string(mailbox.to(address)[0]).get_payload(decode=True)
    assert isinstance(body, bytes)
    found = re.search(r"http://\S+/sign/\S+", body.decode())
    assert found, body
    return found.group(0)


@pytest.fixture
def inbox() -> Iterator[tuple[Mailbox, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def api_port() -> int:
    """Chosen before the runtime opens: the links it emails name it (EVAULT_PUBLIC_URL)."""
    return free_port(PORTS[0], PORTS[0] + 20)


@pytest.fixture
def vault_env(vault_env: dict[str, str], inbox: tuple[Mailbox, int], api_port: int) -> dict[str, str]:
    return {
        **vault_env,
        "EVAULT_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
        "EVAULT_SMTP_URL": f"smtp://127.0.0.1:{inbox[1]}",
        "EVAULT_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
        "EVAULT_WEBHOOK_RETRY_SCHEDULE": "0.3,0.3,0.3",
    }


@pytest.fixture
def served(runtime: Runtime, api_port: int) -> Iterator[str]:
    runtime.start_mailer()
    runtime.start_webhook_sender()
    with serving(create_app(runtime), runtime.settings.edge, api_port, api_port + 1):
        yield f"http://127.0.0.1:{api_port}"


@contextmanager
def chromium() -> Iterator[Page]:
    """A page of Debian's chromium. Leave it before pyHanko validates: its sync API runs an event loop."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser.new_page()
        finally:
            browser.close()


def _call(http: httpx.Client, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
    response = http.request(method, API + path, **kwargs)
    assert response.status_code == expect, response.text
    return response.json()


def _sent_envelope(http: httpx.Client) -> str:
    recipients = [
        {"name": name, "email": address, "role": "signer", "order": n, "fields": [FIELD]}
        for n, (name, address) in enumerate(SIGNERS, 1)
    ]
    envelope = _call(
        http,
        "POST",
        "/envelopes",
        201,
        json={"kind": "esign", "title": "Loan 2024", "secured_party": {"name": "First Bank"}, "recipients": recipients},
    )
    pdf = make_pdf(pages=2)
    _call(
        http,
        "POST",
        f"/envelopes/{envelope['id']}/upload",
        201,
        content=pdf,
        headers={"Content-Type": "application/pdf"},
    )
    _call(http, "POST", f"/envelopes/{envelope['id']}/send")
    return str(envelope["id"])


def _draw(page: Page) -> None:
    """A zigzag on the canvas with the mouse, as a signer draws."""
    page.check("#mode-drawn")
    box = page.locator("#pad").bounding_box()
    assert box is not None
    left, top, width, height = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(left + width * 0.1, top + height * 0.7)
    page.mouse.down()
    for n in range(1, 9):
        page.mouse.move(left + width * (0.1 + n * 0.1), top + height * (0.3 if n % 2 else 0.7), steps=4)
    page.mouse.up()


def _sign_in_browser(page: Page, url: str, name: str, drawn: bool = False) -> None:
    """What a signer does: read the disclosure, type the access code, consent, read, adopt (typed, or drawn on
    the canvas), sign. The page runs under its CSP without a single violation."""
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(url)
    page.wait_for_selector("#disclosure:not([hidden])")
    assert "paper" in page.inner_text("#disclosure-text")  # the disclosure came from the ceremony's state
    assert page.locator("#pages img").count() == 0  # nothing of the document before consent
    assert page.evaluate("document.getElementById('access-image').naturalWidth") > 0
    page.fill("#access-code", access_code(urlsplit(url).path.rsplit("/", 1)[1]))
    page.check("#consent-box")
    page.click("#consent")
    page.wait_for_selector("#document:not([hidden])")
    page.wait_for_function(
        "() => { const imgs = [...document.querySelectorAll('#pages img')];"
        " imgs.forEach((i) => i.scrollIntoView());"
        " return imgs.length === 2 && imgs.every((i) => i.complete && i.naturalWidth === 1000); }"
    )
    assert page.input_value("#typed-name") == name
    assert page.inner_text("#typed-preview") == name
    if drawn:
        _draw(page)
    page.check("#intent-box")
    page.click("#sign")
    page.wait_for_selector("#done:not([hidden])")
    assert "You have signed" in page.inner_text("#done-text")
    assert not [line for line in console if "Content Security Policy" in line], console


def _wait(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_two_signers_sign_in_chromium_and_the_sealed_pdf_is_vaulted(
    served: str, tenant: Any, inbox: tuple[Mailbox, int], runtime: Runtime
) -> None:
    _, headers = tenant
    receiver = Receiver().start()
    try:
        with httpx.Client(base_url=served, headers=headers, timeout=30) as http:
            secret = _call(http, "PATCH", "/webhook", json={"url": receiver.url})["secret"]
            envelope_id = _sent_envelope(http)

            with chromium() as page:
                first = link_for(inbox[0], SIGNERS[0][1])
                _sign_in_browser(page, first, SIGNERS[0][0])
                second = link_for(inbox[0], SIGNERS[1][1])  # emailed when the first signer signed
                _sign_in_browser(page, second, SIGNERS[1][0], drawn=True)

            _wait(lambda: _call(http, "GET", f"/envelopes/{envelope_id}")["vault_state"] == "vaulted")
            envelope = _call(http, "GET", f"/envelopes/{envelope_id}")
            assert envelope["status"] == "completed"
            urls = _call(http, "GET", f"/envelopes/{envelope_id}/vault/signed-url")["documents"]
            assert len(urls) == 1
            sealed = httpx.get(urls[0]["url"], timeout=30).content
            audit = _call(http, "GET", f"/envelopes/{envelope_id}/audit")
    except BaseException:
        receiver.stop()
        raise

    # the sealed PDF: intact, valid, trusted under the vault's own identity, covering the whole file
    assert runtime.document_signer is not None
    seal = check_seal(sealed, runtime.document_signer.asn1()[0])
    assert (seal.signatures, seal.intact, seal.valid, seal.trusted) == (1, True, True, True), seal
    assert seal.whole_file and seal.docmdp_ok and seal.certify, seal
    certificate = seal.last_page_text  # the signing-certificate page, as extractable text
    assert f"Adopted signature (typed): {SIGNERS[0][0]}" in certificate
    assert f"Adopted signature (drawn, with the name): {SIGNERS[1][0]}" in certificate
    assert urls[0]["sha256"] == hashlib.sha256(sealed).hexdigest()

    # the audit trail: the whole ceremony, in order, in the envelope's chain
    types = [event["type"] for event in audit["events"]]
    for expected in ("envelope.created", "envelope.sent", "envelope.completed", VAULTED_IN.name):
        assert types.count(expected) == 1, types
    for step in ("recipient.viewed", "recipient.consented", "recipient.signed"):
        assert types.count(step) == 2, types
    assert types.index("envelope.sent") < types.index("recipient.signed") < types.index("envelope.completed")
    assert types.index("envelope.completed") < types.index(VAULTED_IN.name)
    signed = [event for event in audit["events"] if event["type"] == "recipient.signed"]
    assert [event["data"]["order"] for event in signed] == [1, 2]
    entries = " ".join(event["entry"] for event in audit["events"])
    for name, address in SIGNERS:
        assert name not in entries and address not in entries  # commitments only, in the log

    # the webhooks: one delivery per webhook-worthy event of the envelope, each verified by the receivers' library
    leaving = {e["leaf_index"] for e in audit["events"] if e["type"] in WEBHOOK_EVENTS}
    _wait(lambda: len({r.headers["webhook-id"] for r in receiver.delivered()}) >= len(leaving))
    receiver.stop()
    verifier = Webhook(secret)
    bodies = {r.headers["webhook-id"]: verifier.verify(r.body, r.headers) for r in receiver.delivered()}
    mine = [b for b in bodies.values() if b["data"]["envelope_id"] == envelope_id]
    assert sorted(b["data"]["log_index"] for b in mine) == sorted(leaving)
    assert VAULTED_IN.name in {b["type"] for b in mine}


class _Framer(BaseHTTPRequestHandler):
    """A partner's page on another origin that frames ``self.server.target``."""

    def do_GET(self) -> None:
        body = f'<!doctype html><title>partner</title><iframe id="f" src="{self.server.target}"></iframe>'.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


def test_the_embed_url_is_framed_only_from_an_allowed_origin(served: str, tenant: Any, runtime: Runtime) -> None:
    org_id, headers = tenant
    with httpx.Client(base_url=served, headers=headers, timeout=30) as http:
        envelope_id = _sent_envelope(http)
        recipient = _call(http, "GET", f"/envelopes/{envelope_id}/signing-links")["links"][0]["recipient_id"]
        embed = _call(http, "POST", "/embed/token", 201, json={"envelope_id": envelope_id, "recipient_id": recipient})
    framer = ThreadingHTTPServer(("127.0.0.1", free_port(PORTS[0] + 20, PORTS[1])), _Framer)
    framer.target = embed["url"]  # type: ignore[attr-defined]
    threading.Thread(target=framer.serve_forever, daemon=True).start()
    partner = f"http://localhost:{framer.server_address[1]}"  # another origin than the API's 127.0.0.1
    try:

        def framed(browser_page: Page) -> bool:
            """Whether chromium rendered the signing page inside the partner's frame."""
            browser_page.goto(partner)
            browser_page.wait_for_load_state("load")
            frame = browser_page.frame_locator("#f")
            try:
                frame.locator("#disclosure-title").wait_for(state="attached", timeout=3000)
            except Exception:
                return False
            return True

        with runtime.db.session() as session:
            set_allowed_origins(session, org_id, ["https://loans.example.com"])
        with chromium() as page:
            assert not framed(page)
            with runtime.db.session() as session:
                set_allowed_origins(session, org_id, ["https://loans.example.com", partner])
            assert framed(page)  # the control: the same page, allowed, does load in the frame
    finally:
        framer.shutdown()
        framer.server_close()
