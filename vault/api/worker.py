"""One worker process of ``evault serve --workers N``: its own runtime, its own background threads.

uvicorn calls :func:`create` in every worker it spawns. The parent has already migrated the database, made the
keys and the first organisation, so a worker only opens what exists. Each worker starts the background jobs
too: they take their leases (storage/leases.py), so each runs in one process at a time, and another worker
takes a job over when its holder dies.
"""

from __future__ import annotations

from litestar import Litestar

from storage.settings import Settings
from vault.api.app import create_app
from vault.runtime import open_runtime


def create() -> Litestar:
    """The app of this worker; its runtime closes when the worker shuts down."""
    runtime = open_runtime(Settings.from_env())
    runtime.start_checkpointer()
    runtime.start_reconciler()
    runtime.start_sweeper()
    runtime.start_webhook_sender()
    app = create_app(runtime)
    app.on_shutdown.append(runtime.close)
    return app
