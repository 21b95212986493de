"""The configuration reference (docs/configuration.md), generated from the settings object itself.

Every field of the settings dataclasses names its variable in its comment (``# EVAULT_X: what it does``), on its
line or on the lines just above it. This module reads those comments from ``storage/settings.py`` and each
default from ``Settings.from_env`` with nothing set, so the page says what the code does, never what it once did.
``tests/test_configuration_doc.py`` fails when the page and this table differ, and when a variable the code
reads is documented nowhere. Print the table with ``python -m storage.settings_reference``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import re
import tokenize
from pathlib import Path
from typing import Any, NamedTuple

from storage import settings as settings_module
from storage.settings import Settings

_HEAD = re.compile(r"^(EVAULT_[A-Z0-9_]+\*?)(?:\s+\(([^)]*)\))?\s*:\s*(.*)$", re.S)
DATA_DIR = "<EVAULT_DATA_DIR>"


class Variable(NamedTuple):
    """One environment variable: its name, the default the code applies, what it does, and its concern."""

    name: str
    default: str
    meaning: str
    group: str


def _comments(source: str) -> dict[int, str]:
    """Each line's comment text, by line number."""
    found: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            found[token.start[0]] = token.string.lstrip("#").strip()
    return found


def _field_doc(lines: list[str], comments: dict[int, str], lineno: int) -> str:
    """The comment lines right above a field (no blank line between) and the comment on its own line."""
    above: list[str] = []
    row = lineno - 1
    while row >= 1 and lines[row - 1].lstrip().startswith("#"):
        above.insert(0, comments[row])
        row -= 1
    trailing = comments.get(lineno, "") if not lines[lineno - 1].lstrip().startswith("#") else ""
    return "; ".join(part for part in (" ".join(above), trailing) if part)


def _field_docs() -> dict[tuple[str, str], str]:
    """(class name, field name) -> its comment, for every field of every dataclass in storage/settings.py."""
    source = inspect.getsource(settings_module)
    lines = source.splitlines()
    comments = _comments(source)
    docs: dict[tuple[str, str], str] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for statement in node.body:
            if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                docs[(node.name, statement.target.id)] = _field_doc(lines, comments, statement.lineno)
    return docs


def _render(value: Any, annotation: str, data_dir: Path) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        if value == data_dir:
            return ".evault (in the working directory)"
        text = str(value)
        return text.replace(str(data_dir), DATA_DIR, 1) if text.startswith(str(data_dir)) else text
    if isinstance(value, tuple):
        if not value:
            return "none"
        if "tuple[int, int]" in annotation:
            return f"{value[0]}/{value[1]}"
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value.replace(str(data_dir), DATA_DIR, 1) if value else "empty"
    return str(value)


def _unit(name: str, value: Any) -> str:
    """A byte count in a unit people read (50 MiB), beside the number the variable takes."""
    if not (name.endswith("_bytes") and isinstance(value, int) and value >= 1024):
        return ""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value % size == 0:
            return f" ({value // size} {unit})"
    return ""


def _groups(settings: Settings) -> list[tuple[type[Any], Any]]:
    """Each settings class with the instance the default environment gives (PKCS#11: none unless set)."""
    groups: list[tuple[type[Any], Any]] = [(Settings, settings)]
    for item in dataclasses.fields(Settings):
        value = getattr(settings, item.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            groups.append((type(value), value))
    groups.append((settings_module.Pkcs11Settings, settings.vault.pkcs11))
    return groups


def variables() -> list[Variable]:
    """Every documented variable with its default, in the order the settings classes declare them."""
    data_dir = Path(".evault").resolve()
    settings = Settings.from_env({})
    docs = _field_docs()
    found: list[Variable] = []
    for cls, instance in _groups(settings):
        group = (inspect.getdoc(cls) or cls.__name__).split("\n\n", 1)[0].replace("\n", " ").replace("``", "`")
        if cls is Settings:
            group = "The data directory and the database."
        for item in dataclasses.fields(cls):
            doc = docs.get((cls.__name__, item.name), "")
            match = _HEAD.match(doc)
            if match is None:
                continue
            name, aside, meaning = match.groups()
            if name.endswith("*"):  # a pointer to a group of its own (EVAULT_PKCS11_*), listed there
                continue
            value = getattr(instance, item.name) if instance is not None else None
            default = _render(value, str(item.type), data_dir) + _unit(item.name, value)
            if aside:
                meaning = f"{meaning} ({aside})"
            found.append(Variable(name, default, meaning.strip(), group))
    return found


def markdown_table() -> str:
    """The reference: one table per concern, each variable with its default and meaning."""
    out: list[str] = []
    group = ""
    for variable in variables():
        if variable.group != group:
            group = variable.group
            out += ["", f"**{group}**", "", "| variable | default | meaning |", "|---|---|---|"]
        meaning = variable.meaning.replace("``", "`").replace("|", "\\|")
        out.append(f"| `{variable.name}` | `{variable.default}` | {meaning} |")
    return "\n".join(out).strip()


if __name__ == "__main__":
    print(markdown_table())
