"""Structured logging (spec X03 §1): one JSON object per line.

Each worker process logs to stderr; supervisord writes that to `<LOG>/<worker>.log`, which
`hearthnet log` merges and filters. Secrets never go into log records.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_STD_ATTRS = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
LEVELS = ("debug", "info", "warning", "error")


def rfc3339_ms(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": rfc3339_ms(record.created),
            "level": record.levelname.lower(),
            "component": self.component,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def configure(component: str, level: str = "info") -> logging.Logger:
    """Install the JSON handler on the root logger once; return the component's logger."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(component))
    root.addHandler(handler)
    root.setLevel(level.upper())
    return logging.getLogger(f"hearthnet.{component}")


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
