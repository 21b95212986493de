"""One worker process of ``evault serve --workers N``: its own runtime, its own background threads.

uvicorn spawns each worker as a fresh interpreter and calls :func:`create` in it. The parent has already
migrated the database, made the keys and the first organisation, so a worker only opens what exists. Each
worker starts the background jobs too: they take their leases (storage/leases.py), so each runs in one process
at a time, and another worker takes a job over when its holder dies. ``Protocol`` is the HTTP protocol with
the configured header deadline, named by import path because a spawned worker cannot receive a class made at
run time.
"""

from __future__ import annotations

import os

from litestar import Litestar

from storage.settings import Settings, log_format
from vault.api.app import create_app
from vault.api.server import header_deadline_protocol
from vault.log_format import configure as configure_logging
from vault.runtime import open_runtime

Protocol = header_deadline_protocol(Settings.from_env().edge.header_timeout_seconds)


def create() -> Litestar:
    """The app of this worker; its runtime closes when the worker shuts down."""
    configure_logging(log_format(os.environ))  # a spawned worker starts with no logging of ours
    runtime = open_runtime(Settings.from_env())
    runtime.warm_workers()
    runtime.start_checkpointer()
    runtime.start_reconciler()
    runtime.start_sweeper()
    runtime.start_webhook_sender()
    runtime.start_mailer()
    app = create_app(runtime)
    app.on_shutdown.append(runtime.close)
    return app
