"""The mark every non-authoritative copy carries: what it says, and how a checker recognises it.

Under UCC 9-105 every copy must be readily identifiable as a copy. The vault stamps this mark on every page
(``vault/copy_stamp.py``); the compliance check and the nightly verifier recognise it here, from the copy's
own text, without trusting the register that says which copies exist.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import dataclass

from pypdf import PdfReader

_HEX64 = re.compile(r"[0-9a-f]{64}")
HEADLINE = "NON-AUTHORITATIVE COPY"


@dataclass(frozen=True)
class CopyMark:
    """Identity of one issued copy; its text is printed on every page of that copy."""

    copy_id: str
    envelope_id: str
    source_sha256: str
    issued_at: dt.datetime

    def __post_init__(self) -> None:
        if not _HEX64.fullmatch(self.source_sha256):
            raise ValueError("source_sha256 must be 64 lower-case hex digits")
        if self.issued_at.utcoffset() != dt.timedelta(0):
            raise ValueError("issued_at must be an aware UTC datetime")

    @property
    def issued_iso(self) -> str:
        return self.issued_at.strftime("%Y-%m-%dT%H:%M:%SZ")

    def lines(self) -> list[str]:
        """The band's lines; the hash gets its own line so it can be compared with the vault's record."""
        return [
            f"{HEADLINE} - This is not the authoritative copy",
            f"copy {self.copy_id} of envelope {self.envelope_id}, issued {self.issued_iso}",
            f"source SHA-256: {self.source_sha256}",
        ]


def unmarked_pages(pdf: bytes, copy_id: str) -> list[int]:
    """1-based numbers of the pages whose text lacks the headline or the copy's id; ``[0]`` if unreadable."""
    try:
        reader = PdfReader(io.BytesIO(pdf))
        texts = [page.extract_text() or "" for page in reader.pages]
    except Exception:  # any parser failure means the mark cannot be shown to be there
        return [0]
    missing = [n for n, text in enumerate(texts, start=1) if HEADLINE not in text or copy_id not in text]
    return missing if texts else [0]
