"""Large buffers go straight back to the operating system (glibc only; elsewhere nothing changes).

glibc raises its mmap threshold each time a large mmapped block is freed (up to 32 MiB), after which blocks of
that size come from the heap arenas and stay in the process when freed: with several threads, each vetting a
large PDF once, the resident size grew by about three bodies' worth instead of one (measured, see
tests/test_upload_limits.py). A fixed threshold of 1 MiB keeps every large buffer an mmap that is returned
when it is freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1024 * 1024


def return_large_buffers() -> bool:
    """Fix glibc's mmap threshold at 1 MiB; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False
