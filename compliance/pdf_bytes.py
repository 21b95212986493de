"""A PDF held in memory, for pypdf to read without copying it whole.

pypdf asks any stream that has ``getbuffer`` for its size through that view (``pypdf._utils.get_stream_size``,
at every cross-reference table it reads). A view of a ``BytesIO`` made from ``bytes`` is writable, so the
``BytesIO`` first copies the whole file into memory of its own: 0.5-0.7 ms for a MiB here, mostly the fresh
pages' faults, once per reader, and a vault-in opens two readers and an issued copy two more. Without
``getbuffer`` pypdf seeks to the end instead, and the file is read where it lies.
"""

from __future__ import annotations

import io
from typing import NoReturn


class PdfBytes(io.BytesIO):
    """``io.BytesIO`` minus ``getbuffer``, for pypdf's readers (pyHanko's never ask for it)."""

    @property
    def getbuffer(self) -> NoReturn:  # hidden on purpose: see the module docstring
        raise AttributeError("getbuffer")
