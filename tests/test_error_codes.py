"""The error-code registry is exhaustive, and docs/error-codes.md's table is the registry."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from compliance.error_codes import CODES, markdown_table
from vault.api.errors import CODE_BY_STATUS

ROOT = Path(__file__).resolve().parent.parent
_LITERAL = re.compile(r'"([A-Z][A-Za-z]+\.[A-Z][A-Za-z]+)"')
NOT_CODES = {"Resource.ErrorType"}  # the pattern's name in docstrings


_IN_TEXT = re.compile(r"(?<![\w.])([A-Z][A-Za-z]+\.[A-Z][A-Za-z]+)(?![\w.])")


def _sources() -> list[Path]:
    """Every module that may raise a code (migrations speak SQL, whose NEW.x and OLD.x are no codes)."""
    return [
        path
        for package in ("vault", "compliance", "storage")
        for path in (ROOT / package).rglob("*.py")
        if path.name != "error_codes.py" and "migrations" not in path.parts
    ]


def _fstring_parts(path: Path) -> list[tuple[ast.JoinedStr, int, str]]:
    """The literal parts of every f-string in a module, with the f-string and the part's position in it."""
    parts = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.JoinedStr):
            for index, value in enumerate(node.values):
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    parts.append((node, index, value.value))
    return parts


def _raised() -> set[str]:
    """Codes as quoted literals, and codes written inside f-strings (``f"evault: Database.NotReady: {exc}"``)."""
    found: set[str] = set()
    for path in _sources():
        found |= set(_LITERAL.findall(path.read_text()))
        for _, _, text in _fstring_parts(path):
            found |= set(_IN_TEXT.findall(text))
    return found - NOT_CODES


def test_no_code_is_assembled_from_parts() -> None:
    """A code like ``f"{resource}.NotFound"`` or ``f"Copy.{kind}"`` could never be checked against the registry."""
    assembled = []
    for path in _sources():
        for node, index, text in _fstring_parts(path):
            before_value = index + 1 < len(node.values) and re.search(r"(?<![\w.])[A-Z][A-Za-z]+\.$", text)
            after_value = index > 0 and re.match(r"\.[A-Z][A-Za-z]+(?![\w.])", text)
            if before_value or after_value:
                assembled.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert assembled == []


def test_every_code_in_the_source_is_registered_and_every_registered_code_is_used() -> None:
    raised = _raised()
    assert sorted(raised - CODES.keys()) == [], "register these in compliance/error_codes.py"
    assert sorted(CODES.keys() - raised) == [], "registered but raised nowhere"


def test_http_layer_codes_have_their_status() -> None:
    for status, code in CODE_BY_STATUS.items():
        if code in CODES and code != "Request.UnsupportedMediaType":
            assert CODES[code].status == status, code


def test_the_error_code_page_is_the_registry() -> None:
    page = (ROOT / "docs" / "error-codes.md").read_text()
    match = re.search(r"<!-- error-codes:start -->\n(.*?)\n<!-- error-codes:end -->", page, re.S)
    assert match is not None, "docs/error-codes.md lacks the error-code table markers"
    assert match.group(1).strip() == markdown_table(), "regenerate: .venv/bin/python scripts/gen_docs.py"
