from __future__ import annotations

import json
import os

from hearthnet.logview import LogFilter, LogReader, component_names, parse_line


def test_parse_line_json_and_raw():
    r = parse_line(json.dumps({"ts": "T1", "level": "WARN", "logger": "a.b", "msg": "m", "k": 1}), "llm_00", "T0")
    assert (r.ts, r.level, r.source, r.logger, r.msg, r.raw) == ("T1", "warning", "llm_00", "a.b", "m", False)
    assert r.to_dict()["k"] == 1 and r.to_dict()["component"] == "llm_00"
    raw = parse_line("Traceback (most recent call last):\n", "llm_00", "T0")
    assert (raw.ts, raw.level, raw.msg, raw.raw, raw.logger) == ("T0", "error", "Traceback (most recent call last):", True, "llm_00")
    # JSON that is not a log record is shown raw too
    assert parse_line("[1, 2]", "x", "T").raw


def test_component_names():
    assert component_names("llm_00") == ("llm_00", "llm")
    assert component_names("gateway") == ("gateway",)
    assert component_names("rag_worker") == ("rag_worker",)


def test_filter():
    rec = parse_line(json.dumps({"ts": "T", "level": "info", "logger": "hearthnet.broker.route", "msg": "m",
                                 "component": "broker"}), "broker", "")
    assert LogFilter().matches(rec)
    assert LogFilter(min_level="info").matches(rec) and not LogFilter(min_level="warning").matches(rec)
    assert LogFilter(components=("broker",)).matches(rec)
    assert LogFilter(components=("hearthnet.broker",)).matches(rec)
    assert not LogFilter(components=("hearthnet.bro",)).matches(rec)
    assert not LogFilter(components=("llm",)).matches(rec)


def test_start_zero_lines_then_poll(tmp_path):
    f = tmp_path / "a.log"
    f.write_text(json.dumps({"ts": "1", "level": "info", "logger": "x", "msg": "old"}) + "\n")
    reader = LogReader(tmp_path)
    try:
        assert reader.start(0) == []
        assert reader.poll() == []
        with open(f, "a") as fh:
            fh.write(json.dumps({"ts": "2", "level": "info", "logger": "x", "msg": "new"}) + "\n")
        assert [r.msg for r in reader.poll()] == ["new"]
    finally:
        reader.close()


def test_deleted_then_recreated_file(tmp_path):
    f = tmp_path / "a.log"
    f.write_text(json.dumps({"ts": "1", "level": "info", "logger": "x", "msg": "one"}) + "\npartial")
    reader = LogReader(tmp_path)
    try:
        assert [r.msg for r in reader.start(None)] == ["one"]
        os.unlink(f)
        assert [r.msg for r in reader.poll()] == ["partial"]  # the unterminated tail of the old file
        f.write_text(json.dumps({"ts": "2", "level": "info", "logger": "x", "msg": "two"}) + "\n")
        assert [r.msg for r in reader.poll()] == ["two"]
    finally:
        reader.close()


def test_supervisord_lines_keep_their_time_and_level(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        r = parse_line("2026-11-26 01:03:00,411 CRIT Supervisor is running as root.", "supervisord", "T0")
        assert (r.ts, r.level, r.logger, r.msg, r.raw) == (
            "2026-11-26T01:03:00.411Z", "critical", "supervisord", "Supervisor is running as root.", False)
        assert parse_line("2026-11-26 01:03:00,415 INFO spawned: 'broker'", "supervisord", "").level == "info"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
