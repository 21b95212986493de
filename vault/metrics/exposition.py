"""``/metrics``: the process counters (every worker's, in multiprocess mode) and the database's gauges.

Served on the API's port, or on a port of its own (``EVAULT_METRICS_PORT``) by the library's small HTTP server
in a thread; either way unauthenticated, and without identifiers beyond organisation ids.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from storage.db import Database
from vault.metrics.instruments import PROCESS
from vault.metrics.multiproc import MULTIPROC_ENV
from vault.metrics.scrape import DatabaseCollector

CONTENT_TYPE = CONTENT_TYPE_LATEST


class _ThisProcess(Collector):
    """The counters of this process alone (no multiprocess directory)."""

    def collect(self) -> Iterable[Metric]:
        return PROCESS.collect()


def scrape_registry(db: Database, checkpoint_interval_seconds: int) -> CollectorRegistry:
    """What one scrape reads: every process's counters, then the database's gauges."""
    registry = CollectorRegistry(auto_describe=False)
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    registry.register(DatabaseCollector(db, checkpoint_interval_seconds))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format."""
    return generate_latest(registry)


def serve_separately(registry: CollectorRegistry, host: str, port: int) -> Callable[[], None]:
    """Serve ``registry`` on its own port in a daemon thread; return what stops it. Raises ``OSError`` when
    the port is taken."""
    server, thread = start_http_server(port, host, registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
