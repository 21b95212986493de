"""Prometheus metrics: process counters (multiprocess-safe) and gauges read from the database at scrape time.

``instruments`` holds the few counters and histograms a process increments (requests, ledger events, checkpoint
failures); ``ledger_counts`` feeds the custody counters from committed ledger events; ``scrape`` reads the
database's state (checkpoint age, log size, claims, verifier, webhook backlog) when Prometheus asks; and
``exposition`` assembles them for ``/metrics``. The list with meanings: docs/operations-metrics.md.
"""
