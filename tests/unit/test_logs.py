"""Log writing that survives a full disk, 14-day retention of rotated files, and reading
across rotation (README "What runs", "Metrics")."""
from __future__ import annotations

import errno
import io
import json
import logging
import os
import time
from pathlib import Path

from hearthnet import logs
from hearthnet.logview import LogReader

DAY = 86400.0


class FullDisk(io.StringIO):
    """A stream on a disk with no room left."""

    def write(self, s: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_line_that_cannot_be_written_is_dropped_and_counted(capsys):
    handler = logs.DroppingStreamHandler(FullDisk())
    handler.setFormatter(logs.JsonFormatter("test"))
    logger = logging.getLogger("hearthnet.test.fulldisk")
    logger.addHandler(handler)
    logger.propagate = False
    before = logs.dropped_lines()
    try:
        for i in range(3):
            logger.warning("still serving %d", i)  # must not raise
    finally:
        logger.removeHandler(handler)
    assert logs.dropped_lines() == before + 3
    assert "Traceback" not in capsys.readouterr().err  # no report on another stream either


def test_configure_installs_the_dropping_handler():
    root = logging.getLogger()
    saved = list(root.handlers)
    try:
        logs.configure("test")
        assert any(isinstance(h, logs.DroppingStreamHandler) for h in root.handlers)
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved:
            root.addHandler(h)


def _file(path: Path, age_days: float, now: float, text: str = "x\n") -> Path:
    path.write_text(text)
    os.utime(path, (now - age_days * DAY, now - age_days * DAY))
    return path


def test_rotated_files_older_than_14_days_are_removed(tmp_path):
    now = 1_800_000_000.0  # an injected clock: ages are relative to it
    live = _file(tmp_path / "gateway.log", 30, now)  # live files stay whatever their age
    old = _file(tmp_path / "gateway.log.3", 15, now)
    old_sup = _file(tmp_path / "supervisord.log.1", 14.01, now)
    fresh = _file(tmp_path / "gateway.log.1", 13.9, now)
    other = _file(tmp_path / "notes.txt", 40, now)
    removed = logs.prune_logs(tmp_path, now=now)
    assert sorted(removed) == sorted([old, old_sup])
    assert live.exists() and fresh.exists() and other.exists()
    assert logs.prune_logs(tmp_path, now=now + 0.2 * DAY) == [fresh]


def test_prune_of_a_missing_dir_is_quiet(tmp_path):
    assert logs.prune_logs(tmp_path / "nope") == []


def _line(ts: str, msg: str) -> str:
    return json.dumps({"ts": ts, "level": "info", "logger": "hearthnet.x", "msg": msg}) + "\n"


def test_log_reader_reaches_into_rotated_files(tmp_path):
    (tmp_path / "echo_00.log.2").write_text(_line("2026-01-01T00:00:01.000Z", "a") +
                                            _line("2026-01-01T00:00:02.000Z", "b"))
    (tmp_path / "echo_00.log.1").write_text(_line("2026-01-01T00:00:03.000Z", "c"))
    (tmp_path / "echo_00.log").write_text(_line("2026-01-01T00:00:04.000Z", "d"))
    (tmp_path / "broker.log").write_text(_line("2026-01-01T00:00:02.500Z", "z"))
    reader = LogReader(tmp_path)
    try:
        assert [r.msg for r in reader.start(3)] == ["z", "c", "d"]
    finally:
        reader.close()
    reader = LogReader(tmp_path)
    try:
        recs = reader.start(None)
    finally:
        reader.close()
    assert [r.msg for r in recs] == ["a", "b", "z", "c", "d"]
    assert {r.source for r in recs} == {"echo_00", "broker"}
