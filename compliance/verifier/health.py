"""Storage health: the buckets exist, are versioned, and the authoritative one has Object Lock."""

from __future__ import annotations

from compliance.verifier.context import Context
from compliance.verifier.findings import Finding
from storage.buckets import bucket_problems


def check_storage(ctx: Context) -> None:
    for store, worm in ((ctx.sources.authoritative, True), (ctx.sources.copies, False)):
        for problem in bucket_problems(store.client, store.bucket, worm=worm):
            ctx.report(Finding("Storage.Misconfigured", problem, {"bucket": store.bucket}))
