"""Log lines as JSON objects (``EVAULT_LOG_FORMAT=json``) or as text; the same fields either way.

Every line has ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``; a request's line adds the fields
its ``extra={"evault": {...}}`` carries (request and correlation ids, organisation, key prefix, route template,
status, duration). What goes in is chosen where it is logged: ids and templates, never keys, tokens, document
bytes, names or email addresses (tests/test_json_logs.py greps a whole run's log for them).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

FIELDS = "evault"  # the attribute of a LogRecord that holds a line's structured fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, FIELDS, None) or {})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(log_format: str) -> None:
    """The root logger's one handler (stderr) in ``log_format`` (``text`` or ``json``); uvicorn's loggers
    propagate to it (the service starts uvicorn without a logging config of its own)."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
