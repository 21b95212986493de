"""``/envelopes``: register an envelope to vault and read it back."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from compliance.ledger.events import Actor
from vault.envelopes import NewEnvelope, create_envelope, describe, get_envelope
from vault.runtime import Runtime
from vault.tenancy import Principal


def _etag(view: dict[str, Any]) -> dict[str, str]:
    return {"ETag": f'"{view["id"]}.{view["revision"]}"'}


class EnvelopeController(Controller):
    path = "/envelopes"
    tags = ["Envelopes"]

    @post("/", opt={"scope": "envelopes:write"}, sync_to_thread=True)
    def create(
        self, data: JSONBody[NewEnvelope], runtime: NamedDependency[Runtime], actor: NamedDependency[Actor]
    ) -> Response[dict[str, Any]]:
        """Register an envelope (e-sign or paper) with its parties and secured party."""
        with runtime.db.session() as session:
            envelope = create_envelope(session, actor, data)
            view = describe(session, envelope)
        return Response(view, status_code=201, headers=_etag(view))

    @get("/{envelope_id:str}", opt={"scope": "envelopes:read"}, sync_to_thread=True)
    def read(
        self, envelope_id: FromPath[str], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
    ) -> Response[dict[str, Any]]:
        """The envelope with its vault state and, once vaulted, its authoritative copy."""
        with runtime.db.read_session() as session:
            view = describe(session, get_envelope(session, principal.org_id, envelope_id))
        return Response(view, headers=_etag(view))
