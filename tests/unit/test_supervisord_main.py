"""supervisord's log handler on a full disk: the line is dropped and counted, supervisord
goes on (hearthnet/supervisord_main.py)."""
from __future__ import annotations

import errno
import io

from supervisor import loggers

from hearthnet import supervisord_main


class FullDisk(io.BytesIO):
    def write(self, b: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


class BrokenStderr(io.StringIO):
    def write(self, s: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_neither_raises_nor_floods_stderr(monkeypatch):
    original = loggers.Handler.handleError
    try:
        supervisord_main.install()
        err = io.StringIO()
        monkeypatch.setattr("sys.stderr", err)
        handler = loggers.StreamHandler(FullDisk())
        record = loggers.LogRecord(loggers.LevelsByName.INFO, b"a worker line\n")
        before = supervisord_main.dropped_lines()
        for _ in range(50):
            handler.emit(record)
        assert supervisord_main.dropped_lines() - before == 50
        assert err.getvalue().count("Traceback") <= 1  # reported once at most, not per line
        monkeypatch.setattr("sys.stderr", BrokenStderr())  # the run dir is full too
        handler.emit(record)  # must not raise into supervisord's loop
    finally:
        loggers.Handler.handleError = original
