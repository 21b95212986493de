"""Regenerate the documentation's generated tables from the code (run from anywhere):

    .venv/bin/python scripts/gen_docs.py           # rewrite them
    .venv/bin/python scripts/gen_docs.py --check   # exit 1, naming the page, when one is out of date

Each table sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in its page; the prose around it is
written by hand. The tests (test_error_codes, test_event_catalogue, test_configuration_doc) compare the same
regions, so a page that drifts from the code fails CI; this script is how to bring it back.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compliance.error_codes import markdown_table as error_codes  # noqa: E402
from compliance.ledger.event_catalogue import markdown_table as events  # noqa: E402
from storage.settings_reference import markdown_table as configuration  # noqa: E402

TABLES: dict[str, tuple[str, Callable[[], str]]] = {
    "docs/error-codes.md": ("error-codes", error_codes),
    "docs/events.md": ("events", events),
    "docs/configuration.md": ("configuration", configuration),
}


def regenerated(text: str, marker: str, table: str) -> str:
    pattern = re.compile(rf"(<!-- {marker}:start -->\n)(.*?)\n?(<!-- {marker}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"gen_docs: the page lacks <!-- {marker}:start --> ... <!-- {marker}:end -->")
    return pattern.sub(lambda m: m.group(1) + table + "\n" + m.group(3), text)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for page, (marker, make) in TABLES.items():
        path = ROOT / page
        old = path.read_text()
        new = regenerated(old, marker, make())
        if new != old:
            stale.append(page)
            if not check:
                path.write_text(new)
    for page in stale:
        print(f"{'out of date' if check else 'rewrote'}: {page}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
