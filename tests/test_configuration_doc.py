"""docs/configuration.md is the settings object: its table is generated from storage/settings.py, and every
variable the code reads is named on the page."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from storage.settings_reference import markdown_table, variables

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "configuration.md"
_VARIABLE = re.compile(r"EVAULT_[A-Z0-9_]+")


def _read_in_code(path: Path) -> set[str]:
    """The EVAULT_ names in a module's string literals (its comments and docstrings do not read anything)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            names |= {m for m in _VARIABLE.findall(node.value) if m == node.value or node.value.startswith(m)}
    return names


def test_the_page_is_the_settings_object() -> None:
    match = re.search(r"<!-- configuration:start -->\n(.*?)\n<!-- configuration:end -->", PAGE.read_text(), re.S)
    assert match is not None, "docs/configuration.md lacks the configuration table markers"
    assert match.group(1).strip() == markdown_table(), "regenerate: .venv/bin/python scripts/gen_docs.py"


def test_every_variable_the_settings_read_is_documented_by_its_field_and_nothing_else_is() -> None:
    documented = {v.name for v in variables()}
    read = _read_in_code(ROOT / "storage" / "settings.py")
    assert sorted(read - documented) == [], "give the field a '# EVAULT_X: meaning' comment"
    assert sorted(documented - read) == [], "documented, but storage/settings.py never reads it"


def test_every_variable_read_anywhere_is_named_on_the_page() -> None:
    page = PAGE.read_text()
    read: set[str] = set()
    for package in ("vault", "compliance", "storage"):
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                read |= _read_in_code(path)
    missing = sorted(name for name in read if f"`{name}`" not in page)
    assert missing == [], "name these on docs/configuration.md"
