"""Reading one stored version as an auditor: stream it, re-hash it, and tell damage from a passing fault.

A read that fails with a server error is tried again a bounded number of times and then reported as
``Object.Unreadable``: SeaweedFS answers 500 on GET for a damaged needle while HEAD still answers 200.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby

from compliance.verifier.context import Context
from storage.errors import ChecksumMismatch, ObjectMissing, StorageError, StorageUnavailable
from storage.object_store import ObjectInfo, ObjectStore, VersionEntry


@dataclass(frozen=True)
class ReadResult:
    info: ObjectInfo | None  # None: the version could not be read (see ``failure``)
    sha256: str | None  # of the bytes received (None when they did not hash to the stored checksum)
    size: int
    failure: str | None = None  # "missing", "unreadable" or "checksum"
    error: str | None = None


def read_version(
    ctx: Context, store: ObjectStore, key: str, version_id: str, sink: Callable[[bytes], object] | None = None
) -> ReadResult:
    """Stream ``key@version_id`` in bounded memory (``sink`` sees each chunk), hashing as it goes."""
    error: StorageError | None = None
    for attempt in range(ctx.tuning.read_attempts):
        size = 0
        try:
            info, chunks = store.open_read(key, version_id)
            # ``open_read``'s chunks already hash against the stored checksum and raise on a difference: hash a
            # second time only when the store kept no whole-object checksum (a composite or absent one).
            digest = hashlib.sha256() if info.sha256_hex is None else None
            for chunk in chunks:
                if digest is not None:
                    digest.update(chunk)
                size += len(chunk)
                if sink is not None:
                    sink(chunk)
        except ChecksumMismatch as exc:
            return ReadResult(None, None, size, "checksum", str(exc))
        except ObjectMissing as exc:
            return ReadResult(None, None, 0, "missing", str(exc))
        except StorageUnavailable as exc:
            error = exc
            time.sleep(ctx.tuning.retry_pause * (attempt + 1))
            continue
        except StorageError as exc:
            return ReadResult(None, None, 0, "unreadable", str(exc))
        ctx.count("bytes_read", 0, size)
        return ReadResult(info, digest.hexdigest() if digest is not None else info.sha256_hex, size)
    return ReadResult(None, None, 0, "unreadable", f"{error} (after {ctx.tuning.read_attempts} attempts)")


def by_key(entries: Iterable[VersionEntry]) -> Iterator[tuple[str, list[VersionEntry]]]:
    """A listing grouped per key (the listing is in key order)."""
    for key, group in groupby(entries, key=lambda e: e.key):
        yield key, list(group)
