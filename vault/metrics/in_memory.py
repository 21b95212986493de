"""Imported first by the evidence workers' forkserver: their ``prometheus_client`` keeps its values in memory.

The workers inherit the service's environment, ``PROMETHEUS_MULTIPROC_DIR`` included, and the library would
give each worker process files of its own there, left behind by every worker retired or killed, to be summed
at every scrape. The evidence jobs count nothing (every counter is incremented by the service's own code:
its requests, and the ledger events its sessions commit), so the workers write no files at all.
"""

from __future__ import annotations

import os

from vault.metrics.multiproc import MULTIPROC_ENV

os.environ.pop(MULTIPROC_ENV, None)
