"""The error-code registry is exhaustive, and the README's table is the registry."""

from __future__ import annotations

import re
from pathlib import Path

from compliance.error_codes import CODES, markdown_table
from vault.api.errors import CODE_BY_STATUS

ROOT = Path(__file__).resolve().parent.parent
_LITERAL = re.compile(r'"([A-Z][A-Za-z]+\.[A-Z][A-Za-z]+)"')
NOT_CODES = {"Resource.ErrorType"}  # the pattern's name in docstrings


def _raised() -> set[str]:
    found: set[str] = set()
    for package in ("vault", "compliance", "storage"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name != "error_codes.py":
                found |= set(_LITERAL.findall(path.read_text()))
    return found - NOT_CODES


def test_every_code_in_the_source_is_registered_and_every_registered_code_is_used() -> None:
    raised = _raised()
    assert sorted(raised - CODES.keys()) == [], "register these in compliance/error_codes.py"
    assert sorted(CODES.keys() - raised) == [], "registered but raised nowhere"


def test_http_layer_codes_have_their_status() -> None:
    for status, code in CODE_BY_STATUS.items():
        if code in CODES and code != "Request.UnsupportedMediaType":
            assert CODES[code].status == status, code


def test_readme_table_is_the_registry() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- error-codes:start -->\n(.*?)\n<!-- error-codes:end -->", readme, re.S)
    assert match is not None, "README lacks the error-code table markers"
    assert match.group(1).strip() == markdown_table(), "regenerate: python -m compliance.error_codes"
