"""``POST /embed/token``: a short-lived URL to a recipient's signing page, for the partner's iframe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from compliance.errors import InvalidInput
from vault.api.schemas import WRITE_ERRORS, answers
from vault.embed import mint_embed_token
from vault.runtime import Runtime
from vault.tenancy import Principal


@dataclass
class EmbedTokenRequest:
    envelope_id: str
    recipient_id: str


@dataclass
class EmbedToken:
    """``url`` is the signing page (``.../sign/<token>``); frame it from an origin the operator allowed."""

    token: str
    url: str
    expires_at: str


class EmbedController(Controller):
    path = "/embed"
    tags = ["Embed"]

    @post(
        "/token",
        opt={"scope": "esign:write"},
        status_code=201,
        sync_to_thread=True,
        responses=answers(201, EmbedToken, (*WRITE_ERRORS, 410), "The token, its signing URL and when it ends"),
    )
    def token(
        self,
        data: JSONBody[EmbedTokenRequest],
        runtime: NamedDependency[Runtime],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        """Mint a token for one recipient of an envelope out for signing (``sent``); it ends after
        ``EVAULT_EMBED_TOKEN_TTL_SECONDS`` or with the recipient's link."""
        for name in ("envelope_id", "recipient_id"):
            value = getattr(data, name)
            if not isinstance(value, str) or not 1 <= len(value) <= 40:
                raise InvalidInput("Request.InvalidField", f"{name} must be an id", field=name)
        return mint_embed_token(runtime.ceremonies(), principal.org_id, data.envelope_id, data.recipient_id)
