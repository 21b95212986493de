"""The nightly integrity verifier (``evault verify``): every byte, lock, version, copy and proof re-checked.

- ``findings``: a finding and its stable fingerprint (the codes' registry is ``compliance.finding_codes``).
- ``scope``: what a run checks (filters, shard, snapshot); ``run``: one run, recorded or not.
- ``objects``, ``copies``, ``logs``, ``outside``, ``health``: the checks; ``pipeline``, ``reads``, ``merge``: how
  they stream.
- ``run_records``: run records, progress, open findings, ledger events; ``report``: the signed report.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from compliance.sources import Sources
from compliance.verifier.findings import Finding
from compliance.verifier.logs import audit_log
from compliance.verifier.run import CannotVerify, Options, Outcome, fix_scope, verify

__all__ = ["CannotVerify", "Finding", "Options", "Outcome", "audit_log", "fix_scope", "verify", "verify_vault"]


def verify_vault(sources: Sources, claim_grace: timedelta = timedelta(minutes=15)) -> dict[str, Any]:
    """Everything, once, recording nothing: the findings as JSON (for tests and library callers)."""
    outcome = verify(sources, options=Options(claim_grace=claim_grace, record=False, concurrency=4))
    return {
        "clean": outcome.clean,
        "organisations": len(outcome.scope.log_sizes),
        "documents": outcome.counts.get("objects", 0),
        "findings": [f.as_json() for f in outcome.findings],
    }
