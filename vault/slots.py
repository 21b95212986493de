"""In-flight caps: at most ``total`` holders at once in this process, and at most ``per_key`` for one key.

Uploads (per API key) and stampings (per organisation) are capped alike: a request that finds no slot free
within its wait is refused with a retry hint (429 or 503, ``Retry-After``), never queued without bound. The
counters are in-process state, so each service process has its own (``evault serve`` runs one).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from compliance.errors import EvaultError

Refusal = Callable[[bool, int], EvaultError]  # (the key's own share is what is full, the cap that was hit)


class Slots:
    def __init__(self, total: int, per_key: int) -> None:
        self.total, self.per_key = total, per_key
        self._lock = threading.Condition()
        self._running = 0
        self._by_key: Counter[str] = Counter()

    def _free(self, key: str | None) -> bool:
        return self._running < self.total and (key is None or self._by_key[key] < self.per_key)

    @contextmanager
    def slot(self, key: str | None, refuse: Refusal, wait_seconds: float = 0.0) -> Iterator[None]:
        """Hold a slot (``key`` None: count only towards the total), waiting at most ``wait_seconds``."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._free(key), timeout=wait_seconds):
                key_full = key is not None and self._by_key[key] >= self.per_key
                raise refuse(key_full, self.per_key if key_full else self.total)
            self._running += 1
            if key is not None:
                self._by_key[key] += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if key is not None:
                    self._by_key[key] -= 1
                    if not self._by_key[key]:
                        del self._by_key[key]
                self._lock.notify_all()
