"""glibc's allocator, tuned per process kind (glibc only; elsewhere nothing changes).

glibc raises its mmap threshold each time a large mmapped block is freed (up to 32 MiB), and trims the top of
its heap once 128 KiB there are free. The two kinds of process the vault runs want opposite things from that:

- **The service** holds many requests' bodies at once. Blocks that glibc's raised threshold had moved into the
  heap arenas stayed in the process when freed: with several threads, each vetting a large PDF once, the
  resident size grew by about three bodies' worth instead of one (measured, see tests/test_upload_limits.py).
  A fixed threshold of 1 MiB keeps every large buffer an mmap that is returned when it is freed.
- **A PDF worker** (vault.worker_pool) runs one job at a time under its own memory limit, and is retired when
  its resident size after a job passes its pool's bound. With glibc's defaults it gave back and faulted in
  again about 4.5 MB a job: ~1,150 minor page faults per vetting of a 1 MiB signed PDF, 10-20 % of the worker's
  CPU for that job on this machine (docs/benchmarks.md). Buffers up to 16 MiB come from the heap and are kept
  for the next job, and up to 32 MiB of free heap top stays mapped.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
SERVICE_MMAP_THRESHOLD_BYTES = 1024 * 1024
WORKER_MMAP_THRESHOLD_BYTES = 16 * 1024 * 1024
WORKER_TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024


def _mallopt(settings: dict[int, int]) -> bool:
    """Apply glibc ``mallopt`` settings; False where the C library is not glibc or refuses one."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return all(bool(libc.mallopt(option, value)) for option, value in settings.items())
    except (OSError, AttributeError):
        return False


def return_large_buffers() -> bool:
    """The service: every buffer of 1 MiB or more is an mmap, returned to the system when freed."""
    return _mallopt({M_MMAP_THRESHOLD: SERVICE_MMAP_THRESHOLD_BYTES})


def keep_buffers_between_jobs() -> bool:
    """A PDF worker: buffers up to 16 MiB, and 32 MiB of free heap, stay in the process for the next job."""
    return _mallopt({M_MMAP_THRESHOLD: WORKER_MMAP_THRESHOLD_BYTES, M_TRIM_THRESHOLD: WORKER_TRIM_THRESHOLD_BYTES})
