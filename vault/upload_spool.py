"""An uploaded document as it arrived, hashed once while it is written, kept in memory only while small.

A vault-in body is read once: each chunk is hashed (SHA-256) and written to a spool that keeps the first
``memory_bytes`` in memory and moves to a file in a private (0700) directory beyond that. So the memory an
upload costs is bounded whatever its size, the digest is known before anything reads the document, and every
later step (the PDF vetting, signature validation, the stamper's rehearsal, the S3 put) reads the same bytes
through its own file handle. The file is unlinked when the spool is closed.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import IO, BinaryIO

_SPOOL_DIR: Path | None = None


def spool_dir() -> Path:
    """This process's private (0700) directory for spooled uploads (made again if something removed it)."""
    global _SPOOL_DIR
    if _SPOOL_DIR is None or not _SPOOL_DIR.is_dir():
        _SPOOL_DIR = Path(tempfile.mkdtemp(prefix="evault-uploads-"))
        os.chmod(_SPOOL_DIR, 0o700)
    return _SPOOL_DIR


class SpooledDocument:
    """Bytes written once (hashed as they come), then read any number of times through fresh handles."""

    def __init__(self, directory: Path, memory_bytes: int = 1024 * 1024) -> None:
        self._directory = directory
        self._memory_bytes = memory_bytes
        self._chunks: list[bytes] = []  # while they fit in memory; joined once, by finish()
        self._held = b""  # the bytes, once finished, while they fit in memory
        self._file: IO[bytes] | None = None
        self._hash = hashlib.sha256()
        self.size = 0
        self.sha256_hex = ""

    def write(self, chunk: bytes) -> None:
        if self.sha256_hex:
            raise ValueError("spool already finished")
        self._hash.update(chunk)
        self.size += len(chunk)
        if self._file is None and self.size <= self._memory_bytes:
            self._chunks.append(chunk if type(chunk) is bytes else bytes(chunk))  # a caller's buffer may be reused
            return
        if self._file is None:
            self._file = tempfile.NamedTemporaryFile(dir=self._directory, prefix="upload-", delete=True)
            self._file.writelines(self._chunks)
            self._chunks = []
        self._file.write(chunk)

    def finish(self) -> SpooledDocument:
        """No more bytes: the digest is final and readers may open it. Bytes kept in memory become one immutable
        ``bytes`` here, the one copy they cost: every reader after that shares it (a 1 MiB copy is an mmap and
        its page faults on this service, vault/allocator.py)."""
        self.sha256_hex = self._hash.hexdigest()
        if self._file is not None:
            self._file.flush()
        else:
            self._held = b"".join(self._chunks)  # a single chunk is not even copied
            self._chunks = []
        return self

    @property
    def path(self) -> Path | None:
        """The file holding the bytes, or None while they fit in memory."""
        return Path(self._file.name) if self._file is not None else None

    def open(self) -> BinaryIO:
        """A new, independent, seekable reader positioned at the start (over the shared bytes, while in memory)."""
        if not self.sha256_hex:
            raise ValueError("spool not finished")
        if self._file is None:
            return io.BytesIO(self._held)
        return open(self._file.name, "rb")

    def head(self, size: int) -> bytes:
        """The first ``size`` bytes (all of them, without a copy, while they are in memory)."""
        if not self.sha256_hex:
            raise ValueError("spool not finished")
        if self._file is None:
            return self._held[:size]
        with self.open() as reader:
            return reader.read(size)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._chunks = []
        self._held = b""
