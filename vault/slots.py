"""In-flight caps: at most ``total`` holders at once in this process, ``per_key`` for one key, and a fair share
for one organisation.

Uploads (per API key and per organisation) and stampings (per organisation) are capped alike: a request that
finds no slot free within its wait is refused with a retry hint (429 or 503, ``Retry-After``), never queued
without bound. An organisation alone may hold up to ``per_org``; while other organisations hold or wait for
slots too, each may take a new one only while it holds fewer than its fair share, ``total`` divided by the
number of organisations holding or waiting (at least one). So one tenant's slow requests leave the rest of
the slots to the others, and a slot that frees goes to a tenant below its share. The counters are in-process
state, so each service process has its own: they bound what the process itself holds (spools, stampers). The
per-key and per-organisation caps that must hold across processes are also taken as slot leases in the
database (:mod:`vault.slot_leases`).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

from compliance.errors import EvaultError

Full = Literal["key", "org", "total"]
Refusal = Callable[[Full, int], EvaultError]  # (which cap is full, that cap)


class Slots:
    def __init__(self, total: int, per_key: int, per_org: int | None = None) -> None:
        self.total, self.per_key = total, per_key
        self.per_org = total if per_org is None else per_org
        self._lock = threading.Condition()
        self._running = 0
        self._by_key: Counter[str] = Counter()
        self._by_org: Counter[str] = Counter()
        self._waiting: Counter[str] = Counter()  # organisations with a request waiting for a slot

    def org_limit(self, org: str) -> int:
        """What ``org`` may hold now: ``per_org`` alone, at most its fair share beside other organisations."""
        active = {o for o, n in self._by_org.items() if n} | {o for o, n in self._waiting.items() if n} | {org}
        if len(active) == 1:
            return self.per_org
        return min(self.per_org, max(1, self.total // len(active)))

    def _full(self, key: str | None, org: str | None) -> Full | None:
        if key is not None and self._by_key[key] >= self.per_key:
            return "key"
        if org is not None and self._by_org[org] >= self.org_limit(org):
            return "org"
        if self._running >= self.total:
            return "total"
        return None

    @contextmanager
    def slot(
        self, key: str | None, refuse: Refusal, wait_seconds: float = 0.0, org: str | None = None
    ) -> Iterator[None]:
        """Hold a slot (``key``/``org`` None: not counted for one), waiting at most ``wait_seconds``."""
        with self._lock:
            if org is not None:
                self._waiting[org] += 1
            try:
                if not self._lock.wait_for(lambda: self._full(key, org) is None, timeout=wait_seconds):
                    full = self._full(key, org) or "total"
                    limits = {"key": self.per_key, "org": self.org_limit(org or ""), "total": self.total}
                    raise refuse(full, limits[full])
            finally:
                if org is not None:
                    self._waiting[org] -= 1
                    if not self._waiting[org]:
                        del self._waiting[org]
                    self._lock.notify_all()  # one contender fewer: the others' shares may have grown
            self._running += 1
            if key is not None:
                self._by_key[key] += 1
            if org is not None:
                self._by_org[org] += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                for counter, name in ((self._by_key, key), (self._by_org, org)):
                    if name is not None:
                        counter[name] -= 1
                        if not counter[name]:
                            del counter[name]
                self._lock.notify_all()
