"""The e-sign ceremony's routes: send, signing links and remind (partner API), and the signing link's own JSON
actions under ``/sign/<token>`` (no API key: the token is the only credential; OpenAPI tag ``signing``).

The HTML signing page (``GET /sign/<token>``) and embed tokens live beside these, in their own module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from sqlmodel import Session

from compliance.ledger.events import Actor
from storage.models import Envelope
from vault.api.conventions import Hook, if_match, json_digest, mutate
from vault.api.schemas import (
    READ_ERRORS,
    SIGNING_ERRORS,
    WRITE_ERRORS,
    EnvelopeView,
    RemindedView,
    SigningDone,
    SigningLinks,
    SigningState,
    answers,
)
from vault.ceremony import signing
from vault.ceremony.completion import complete_quietly
from vault.ceremony.sending import remind_envelope, send_envelope, signing_links
from vault.runtime import Runtime
from vault.tenancy import Principal


class CeremonyController(Controller):
    path = "/envelopes"
    tags = ["Envelopes"]

    @post(
        "/{envelope_id:str}/send",
        opt={"scope": "envelopes:write"},
        status_code=200,
        responses=answers(200, EnvelopeView, WRITE_ERRORS, "Sent: every recipient has a link"),
    )
    async def send(
        self,
        request: Request[Any, Any, Any],
        envelope_id: FromPath[str],
        runtime: NamedDependency[Runtime],
        principal: NamedDependency[Principal],
        actor: NamedDependency[Actor],
    ) -> Response[Any]:
        """Send an e-sign draft for signing (it needs its document, a signer and the secured party). The key
        must also hold ``vault:write``: the completed envelope is vaulted in by itself, in this key's name."""
        principal.require("vault:write")
        precondition = if_match(request)

        def call(hook: Hook) -> None:
            send_envelope(runtime.ceremonies(), actor, envelope_id, if_match=precondition, on_commit=hook)

        return await mutate(request, runtime, actor.org_id, json_digest(await request.body()), 200, call)

    @get(
        "/{envelope_id:str}/signing-links",
        opt={"scope": "envelopes:read"},
        sync_to_thread=True,
        responses=answers(200, SigningLinks, (*READ_ERRORS, 409), "One link per recipient"),
    )
    def links(
        self, envelope_id: FromPath[str], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
    ) -> dict[str, Any]:
        """Every recipient's signing link (``url``, its token a path segment) once the envelope is sent."""
        return signing_links(runtime.ceremonies(), principal.org_id, envelope_id)

    @post(
        "/{envelope_id:str}/remind",
        opt={"scope": "envelopes:write"},
        status_code=200,
        responses=answers(200, RemindedView, WRITE_ERRORS, "Reminded: the emails of those reminded"),
    )
    async def remind(
        self,
        request: Request[Any, Any, Any],
        envelope_id: FromPath[str],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
    ) -> Response[Any]:
        """Send the link again to the signers whose turn it is and who have not signed (rate-limited per
        envelope; the first remind after send never is)."""
        reminded: list[str] = []

        def call(hook: Hook) -> None:
            def done(session: Session, envelope: Envelope, emails: list[str]) -> None:
                reminded.extend(emails)
                hook(session, envelope)

            remind_envelope(runtime.ceremonies(), actor, envelope_id, on_commit=done)

        return await mutate(
            request, runtime, actor.org_id, json_digest(await request.body()), 200, call, reminded=reminded
        )


@dataclass
class SignatureIn:
    type: str  # typed | drawn
    name: str  # the name adopted (printed on the certificate page)
    image: str | None = None  # drawn: data:image/png;base64,... (8-bit, non-interlaced, as a canvas gives)


@dataclass
class SignIn:
    signature: SignatureIn


@dataclass
class DeclineIn:
    reason: str


def _client(request: Request[Any, Any, Any]) -> signing.Client:
    return signing.Client(request.client.host if request.client else None, request.headers.get("user-agent"))


class SigningController(Controller):
    """A recipient's actions; ``{token}`` is the last path segment of their signing link."""

    path = "/sign"
    tags = ["signing"]
    security = [{}]

    @get(
        "/{token:str}/state",
        sync_to_thread=True,
        responses=answers(200, SigningState, SIGNING_ERRORS, "The link's recipient, fields, pages and consent"),
    )
    def state(self, request: Request[Any, Any, Any], token: FromPath[str], runtime: NamedDependency[Runtime]) -> Any:
        """What the signing page shows; the first look is recorded (``recipient.viewed``)."""
        return signing.view(runtime.ceremonies(), token, _client(request))

    @post(
        "/{token:str}/consent",
        status_code=200,
        sync_to_thread=True,
        responses=answers(200, SigningState, SIGNING_ERRORS, "Consent recorded (once; repeating it is harmless)"),
    )
    def consent(self, request: Request[Any, Any, Any], token: FromPath[str], runtime: NamedDependency[Runtime]) -> Any:
        """Consent to electronic records and signatures, after the E-SIGN disclosures in ``state``."""
        return signing.consent(runtime.ceremonies(), token, _client(request))

    @get(
        "/{token:str}/document",
        sync_to_thread=True,
        media_type="application/pdf",
        responses={
            **answers(200, None, SIGNING_ERRORS, "The PDF to sign"),
        },
    )
    def document(self, token: FromPath[str], runtime: NamedDependency[Runtime]) -> Response[bytes]:
        """The document to read and sign, once consent is given."""
        ceremonies = runtime.ceremonies()
        key, version, sha256, filename = signing.document_location(ceremonies, token)
        data = ceremonies.custody.staging_store.read(key, version)
        return Response(
            data,
            media_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="{filename}"', "X-Content-SHA256": sha256},
        )

    @post(
        "/{token:str}/sign",
        status_code=200,
        sync_to_thread=True,
        responses=answers(200, SigningDone, SIGNING_ERRORS, "Signed; the last signature completes the envelope"),
    )
    def sign(
        self,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        data: JSONBody[SignIn],
        runtime: NamedDependency[Runtime],
    ) -> Any:
        """Adopt a signature (a typed name, or a drawn one with its name) and sign, in turn, after consent."""
        ceremonies = runtime.ceremonies()
        body = {"type": data.signature.type, "name": data.signature.name, "image": data.signature.image}
        answer = signing.sign(ceremonies, token, body, _client(request))
        if answer["envelope_status"] == "completed":
            complete_quietly(ceremonies, answer["envelope_id"])
        return answer

    @post(
        "/{token:str}/decline",
        status_code=200,
        sync_to_thread=True,
        responses=answers(200, SigningDone, SIGNING_ERRORS, "Declined: the envelope is declined for good"),
    )
    def decline(
        self,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        data: JSONBody[DeclineIn],
        runtime: NamedDependency[Runtime],
    ) -> Any:
        """Decline to sign; every link of the envelope dies with it."""
        return signing.decline(runtime.ceremonies(), token, data.reason, _client(request))
