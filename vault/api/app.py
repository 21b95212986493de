"""The Litestar application: routes, dependencies, error handling, OpenAPI. Nothing else lives here."""

from __future__ import annotations

from litestar import Litestar, Router
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from sqlalchemy.exc import SQLAlchemyError

from compliance.errors import EvaultError
from storage.errors import StorageError
from vault.allocator import return_large_buffers
from vault.api.allow import complete_allow
from vault.api.ceremony import CeremonyController, SigningController
from vault.api.custody import CustodyController
from vault.api.custody_evidence import CustodyEvidenceController
from vault.api.deps import provide_actor, provide_principal, runtime_of
from vault.api.edge import edge_middleware
from vault.api.embed import EmbedController
from vault.api.envelopes import EnvelopeController
from vault.api.errors import (
    handle_database_error,
    handle_domain_error,
    handle_http_error,
    handle_storage_error,
    handle_unexpected,
)
from vault.api.evidence import EvidenceController
from vault.api.health import health, ready
from vault.api.log import EnvelopeProofController, LogController, public_keys
from vault.api.observe import metrics, observe, timed
from vault.api.openapi import CompletedJsonRenderPlugin
from vault.api.parties import PartiesController
from vault.api.ratelimit_headers import add_rate_headers
from vault.api.request_id import add_id_headers
from vault.api.retention import RetentionController
from vault.api.signing_page import SigningPageController, add_signing_headers, signing_script, signing_style
from vault.api.tlog import TlogController
from vault.api.transfers import EnvelopeTransferController, TransferController
from vault.api.webhooks import WebhookController
from vault.metrics import ledger_counts
from vault.runtime import Runtime


def create_app(runtime: Runtime) -> Litestar:
    return_large_buffers()
    ledger_counts.install()
    on_api_port = [metrics] if runtime.settings.observability.metrics_port == 0 else []
    partner = Router(
        path="/api/v2/partner",
        route_handlers=[
            EnvelopeController,
            CeremonyController,
            CustodyController,
            RetentionController,
            PartiesController,
            EnvelopeTransferController,
            TransferController,
            LogController,
            TlogController,
            EnvelopeProofController,
            EvidenceController,
            CustodyEvidenceController,
            WebhookController,
            EmbedController,
        ],
        dependencies={
            "principal": Provide(provide_principal),
            "actor": Provide(provide_actor),
        },
        security=[{"ApiKey": []}],
    )
    app = Litestar(
        route_handlers=[
            partner,
            SigningController,
            SigningPageController,
            signing_script,
            signing_style,
            health,
            ready,
            public_keys,
            *on_api_port,
        ],
        dependencies={"runtime": Provide(runtime_of, sync_to_thread=False)},
        before_send=[add_id_headers, add_rate_headers, complete_allow, add_signing_headers, observe],
        middleware=[edge_middleware(runtime)],
        exception_handlers={
            EvaultError: handle_domain_error,
            HTTPException: handle_http_error,
            SQLAlchemyError: handle_database_error,
            StorageError: handle_storage_error,
            Exception: handle_unexpected,
        },
        request_max_body_size=runtime.settings.vault.max_upload_bytes,
        openapi_config=OpenAPIConfig(
            title="evault partner API",
            version="2.0.0",
            path="/api/v2",
            render_plugins=[CompletedJsonRenderPlugin()],
            components=Components(
                security_schemes={
                    "ApiKey": SecurityScheme(type="apiKey", name="X-API-Key", security_scheme_in="header")
                }
            ),
        ),
        debug=False,
        logging_config=None,  # the process's logging is ours (vault/log_format.py): text or JSON lines
    )
    app.state.runtime = runtime
    timed(app)
    return app
