"""Structured logging (spec X03 §1): one JSON object per line.

Each worker process logs to stderr; supervisord writes that to `<LOG>/<worker>.log`, which
`hearthnet log` merges and filters. Secrets never go into log records.

Logs still say who called what and when, so they are the owner's alone: `<LOG>` and every
directory under it are 0700, every file 0600. `hearthnet run` sets the umask LOG_UMASK
before supervisord starts (supervisord creates and rotates the worker logs and its own),
and `secure_log_dir` tightens what an older version left behind.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from hearthnet.constants import LOG_RETENTION_DAYS

_STD_ATTRS = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
LEVELS = ("debug", "info", "warning", "error")
LOG_DIR_MODE = 0o700
LOG_FILE_MODE = 0o600
LOG_UMASK = 0o077  # what files are created with under <LOG>: 0600 files, 0700 dirs


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


class DroppingStreamHandler(logging.StreamHandler):
    """A stream handler for which a line that cannot be written (ENOSPC on a full disk, a
    closed or broken stream) is dropped and counted, never raised and never re-reported
    on the same stream: logging must not stop a worker. `dropped_lines()` gives the count."""

    dropped = 0

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            DroppingStreamHandler.dropped += 1
            return
        super().handleError(record)  # a formatting bug: logging's own report


def dropped_lines() -> int:
    """Log lines this process dropped because they could not be written."""
    return DroppingStreamHandler.dropped


def configure(component: str, level: str = "info") -> logging.Logger:
    """Install the JSON handler on the root logger once; return the component's logger."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = DroppingStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(component))
    root.addHandler(handler)
    root.setLevel(level.upper())
    return logging.getLogger(f"hearthnet.{component}")


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def secure_log_dir(log_dir: Path) -> Path:
    """Create `log_dir` 0700 and make everything of ours under it private (dirs 0700,
    files 0600); files of other users are left alone. Returns `log_dir`."""
    log_dir.mkdir(parents=True, exist_ok=True, mode=LOG_DIR_MODE)
    uid = os.getuid()
    for path in [log_dir, *log_dir.rglob("*")]:
        try:
            st = path.lstat()
            if st.st_uid != uid or path.is_symlink():
                continue
            os.chmod(path, LOG_DIR_MODE if path.is_dir() else LOG_FILE_MODE)
        except OSError:
            continue  # rotated away meanwhile
    return log_dir


def append_private(path: Path, text: str) -> None:
    """Append `text` to a log file created 0600 (the CLI's own records, e.g. cli.log)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=LOG_DIR_MODE)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, LOG_FILE_MODE)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(text)


# supervisord's size rotation renames `<name>.log` to `<name>.log.1`, `.2`, ... (its own
# `supervisord.log` too): those are the files retention removes.
ROTATED = re.compile(r"^.+\.log\.\d+$")
PRUNE_EVERY_SECONDS = 3600.0


def prune_logs(log_dir: Path, now: float | None = None, days: int = LOG_RETENTION_DAYS) -> list[Path]:
    """Delete rotated log files last written more than `days` ago (LOG_RETENTION_DAYS, 14);
    the live `<name>.log` files stay (supervisord holds them open). Returns what went.
    Never raises: a file that vanished or cannot be removed is left to the next round."""
    cutoff = (time.time() if now is None else now) - days * 86400
    removed = []
    try:
        candidates = [p for p in log_dir.iterdir() if ROTATED.match(p.name)]
    except OSError:
        return []
    for path in candidates:
        try:
            st = path.lstat()
            if st.st_uid == os.getuid() and st.st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except OSError:
            continue
    return removed


async def prune_forever(log_dir: Path, every: float = PRUNE_EVERY_SECONDS) -> None:
    """The retention task (run by the gateway): prune now, then every `every` seconds."""
    import asyncio  # not at module level: the CLI imports this module and starts no loop

    log = logging.getLogger("hearthnet.logs")
    while True:
        removed = await asyncio.to_thread(prune_logs, log_dir)
        if removed:
            log.info("old rotated logs removed", extra={"files": [p.name for p in removed]})
        await asyncio.sleep(every)
