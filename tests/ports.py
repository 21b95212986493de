"""Every loopback port range the tests open servers on, as named offsets from one configurable base.

The SQLite pass reads ``EVAULT_TEST_AUX_PORT_BASE`` (default 30000) and the PostgreSQL pass gets its own base
from scripts/test.sh (``EVAULT_TEST_PG_AUX_PORT_BASE``, default 31250), so the two passes, which run at once,
never probe the same ports, and a run beside other services moves every range with one variable. All of
it stays below Linux's ephemeral range (32768-60999).
"""

from __future__ import annotations

import os

from tests.helpers import free_port

BLOCK = 1250  # the width of one pass's block; the ranges below must fit in it

RANGES: dict[str, tuple[int, int]] = {  # name: (offset, width)
    "lifecycle": (0, 90),
    "dead_store": (90, 10),
    "contract": (100, 100),
    "key_cli_api": (200, 100),
    "key_cli_store": (300, 92),
    "json_logs": (400, 50),
    "json_logs_metrics": (450, 50),
    "closed": (500, 20),  # ports nothing listens on: a witness, webhook or mail server that is down
    "ceremony": (520, 20),  # the ceremony tests' servers: SMTP (aiosmtpd) and a TSA
    "planted_notes": (540, 20),
    "ready_pg": (560, 20),
    "timestamping": (580, 40),
    "witness": (620, 80),
    "verify_attach": (700, 100),
    "webhook_receiver": (800, 100),
    "slow_link": (900, 30),
    "evidence_reads": (930, 60),
    "upload_limits": (1000, 100),
    "slow_clients": (1100, 80),
    "private_pg": (1180, 20),
    "replicas": (1200, 20),  # a contiguous block: bench/replicas.py's store (8), replicas and PostgreSQL
    "signing_browser": (1220, 30),  # the browser ceremony: the API (first 20) and a partner's framing page
}


def port_range(name: str) -> tuple[int, int]:
    """The half-open range [first, last) named ``name`` in this pass's block."""
    base = int(os.environ.get("EVAULT_TEST_AUX_PORT_BASE", "30000"))
    offset, width = RANGES[name]
    return base + offset, base + offset + width


def aux_port(name: str) -> int:
    """A free port in the range named ``name``."""
    return free_port(*port_range(name))
