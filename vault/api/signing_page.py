"""The signing page at the link itself (``GET /sign/<token>``), its page images and access check, its two static
files, and the headers every signing response carries.

The page is static HTML; its script (a file, so the CSP needs no ``'unsafe-inline'``) reads the link from
``location.pathname`` and calls the JSON actions under it. Nothing here takes an API key: the token is the only
credential, and every read opens the link the way the ceremony's actions do.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.types import Message, Scope

from compliance.errors import EvaultError
from vault.api.errors import STATUS_BY_CATEGORY
from vault.api.schemas import SIGNING_ERRORS, answers
from vault.embed_origins import NO_FRAMING
from vault.runtime import Runtime
from vault.signing_page import access_png, check_access, open_page, page_png

SIGN_PREFIX = "/sign/"
ASSETS_PREFIX = "/signing-assets/"
_ASSETS = Path(__file__).with_name("signing_assets")
PAGE = (_ASSETS / "signing.html").read_bytes()
SCRIPT = (_ASSETS / "signing.js").read_bytes()
STYLE = (_ASSETS / "signing.css").read_bytes()
_ERROR_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">'
    '<meta name="viewport" content="width=device-width, initial-scale=1"><title>Signing link</title>'
    '<link rel="stylesheet" href="/signing-assets/signing.css"></head><body><main><h1>This signing link cannot be '
    'used</h1><section><p class="error">{message}</p><p class="muted">{code}</p><p>If you expected to sign a '
    "document, ask its sender for a new link.</p></section></main></body></html>"
)
_HTML_REFUSALS = {
    404: "No such signing link (forged, mistyped or another vault's)",
    409: "The link was used: its recipient signed or declined",
    410: "The envelope's ceremony ended, or the link expired",
}


def _page_answers() -> dict[int, ResponseSpec]:
    """The page and its refusals are HTML; a fault of ours (500, 503) is the JSON error body like everywhere."""
    specs = answers(200, None, (500, 503), "The signing page")
    specs[200] = ResponseSpec(data_container=str, media_type="text/html", description="The signing page")
    for status, meaning in _HTML_REFUSALS.items():
        specs[status] = ResponseSpec(data_container=str, media_type="text/html", description=meaning)
    return specs


def _png_answers(description: str) -> dict[int, ResponseSpec]:
    specs = answers(200, None, SIGNING_ERRORS, description)
    specs[200] = ResponseSpec(data_container=bytes, media_type="image/png", description=description)
    return specs


def content_security_policy(frame_ancestors: str) -> str:
    """Only this origin's script, style, images and fetches; no inline code, no plugins, no forms elsewhere."""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        f"base-uri 'none'; form-action 'none'; {frame_ancestors}"
    )


_STRICT = {
    "Referrer-Policy": "no-referrer",  # the token is in the URL: it never travels on as a Referer
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def _headers(frame_ancestors: str) -> dict[str, str]:
    headers = {**_STRICT, "Content-Security-Policy": content_security_policy(frame_ancestors)}
    if frame_ancestors == NO_FRAMING:
        headers["X-Frame-Options"] = "DENY"  # for browsers that predate frame-ancestors
    return headers


async def add_signing_headers(message: Message, scope: Scope) -> None:
    """``before_send`` hook: every answer under a signing link (the JSON actions and errors too) is uncacheable,
    sends no Referer and cannot be framed, unless its handler set its own policy (the page, for embedding)."""
    if message["type"] != "http.response.start" or not str(scope.get("path", "")).startswith(SIGN_PREFIX):
        return
    headers = list(message.get("headers", []))
    present = {k.lower() for k, _ in headers}
    defaults = _headers(NO_FRAMING) if b"content-security-policy" not in present else _STRICT
    headers.extend((k.lower().encode(), v.encode()) for k, v in defaults.items() if k.lower().encode() not in present)
    message["headers"] = headers


def _error_page(error: EvaultError) -> Response[bytes]:
    body = _ERROR_PAGE.format(message=html.escape(error.message), code=html.escape(error.code)).encode()
    status = STATUS_BY_CATEGORY[error.category]
    return Response(body, status_code=status, media_type="text/html", headers=_headers(NO_FRAMING))


@dataclass
class AccessCodeIn:
    code: str  # the six digits the access-check image shows


class SigningPageController(Controller):
    path = "/sign/{token:str}"
    tags = ["signing"]
    security = [{}]

    @get("/", media_type="text/html", sync_to_thread=True, responses=_page_answers())
    def page(self, token: FromPath[str], runtime: NamedDependency[Runtime]) -> Response[bytes]:
        """The signing page: disclosures and consent, then the document's pages, then adopt and sign or decline."""
        try:
            link = open_page(runtime.ceremonies(), token)
        except EvaultError as error:
            return _error_page(error)
        return Response(PAGE, media_type="text/html", headers=_headers(link.frame_ancestors))

    @get(
        "/pages/{number:int}",
        sync_to_thread=True,
        media_type="image/png",
        responses=_png_answers("Page `number` (from 1) as a PNG image"),
    )
    def page_image(
        self, token: FromPath[str], number: FromPath[int], runtime: NamedDependency[Runtime]
    ) -> Response[bytes]:
        """A page of the document, rendered; only after consent, like the PDF."""
        return Response(page_png(runtime.ceremonies(), token, number), media_type="image/png")

    @get(
        "/access-check.png",
        sync_to_thread=True,
        media_type="image/png",
        responses=_png_answers("The access check's code as a PNG image"),
    )
    def access_image(self, token: FromPath[str], runtime: NamedDependency[Runtime]) -> Response[bytes]:
        """The image whose code the signer types back before consenting (E-SIGN §101(c)(1)(C)(ii))."""
        return Response(access_png(runtime.ceremonies(), token), media_type="image/png")

    @post(
        "/access-check",
        status_code=204,
        sync_to_thread=True,
        responses=answers(204, None, SIGNING_ERRORS, "The code matches the image"),
    )
    def access_check(
        self, token: FromPath[str], data: JSONBody[AccessCodeIn], runtime: NamedDependency[Runtime]
    ) -> None:
        """Check the code typed from the access-check image: 400 ``Signing.AccessCodeMismatch`` otherwise."""
        check_access(runtime.ceremonies(), token, data.code)


@get("/signing-assets/signing.js", include_in_schema=False)
async def signing_script() -> Response[bytes]:
    return Response(SCRIPT, media_type="text/javascript", headers={**_STRICT, "Cache-Control": "no-cache"})


@get("/signing-assets/signing.css", include_in_schema=False)
async def signing_style() -> Response[bytes]:
    return Response(STYLE, media_type="text/css", headers={**_STRICT, "Cache-Control": "no-cache"})
