"""The counters and histograms a process increments, in one private registry.

Under ``evault serve`` the values live in ``PROMETHEUS_MULTIPROC_DIR`` (set before this module is first
imported, see :mod:`vault.metrics.exposition`), so every worker process adds to the same totals; elsewhere (tests,
a single process) they live in memory. Labels are bounded: route templates, never raw paths or identifiers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

PROCESS = CollectorRegistry(auto_describe=True)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REQUESTS = Counter(
    "evault_http_requests",
    "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"],
    registry=PROCESS,
)
LATENCY = Histogram(
    "evault_http_request_duration_seconds",
    "Time from receiving a request to the end of its answer, by method and route template",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
    registry=PROCESS,
)
LEDGER_EVENTS = Counter(
    "evault_ledger_events", "Ledger events committed by this service, by event type", ["type"], registry=PROCESS
)
VAULT_INS = Counter("evault_vault_ins", "Authoritative copies recorded (vault-ins committed)", registry=PROCESS)
VAULTED_BYTES = Counter("evault_vaulted_bytes", "Bytes of the documents of committed vault-ins", registry=PROCESS)
COPIES = Counter("evault_copies_issued", "Non-authoritative copies issued and registered", registry=PROCESS)
RELEASES = Counter("evault_releases", "Authoritative copies released (vault-outs committed)", registry=PROCESS)
CHECKPOINT_FAILURES = Counter(
    "evault_checkpoint_failures",
    "Scheduled checkpoint attempts that failed, by cause: witness, tsa, or other",
    ["cause"],
    registry=PROCESS,
)


def failure_cause(code: str) -> str:
    """The ``cause`` label of a failed checkpoint from its error code (``Witness.*``, ``Timestamp.*``)."""
    if code.startswith("Witness."):
        return "witness"
    if code.startswith("Timestamp."):
        return "tsa"
    return "other"
