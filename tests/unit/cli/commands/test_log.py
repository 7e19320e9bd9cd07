from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path

from hearthnet.cli.commands.log import show_log
from hearthnet.cli.render import Output
from hearthnet.testing.waiting import wait_for
from tests.unit.cli.conftest import invoke


def rec(ts: str, level: str, logger: str, msg: str, **extra) -> str:
    return json.dumps({"ts": ts, "level": level, "logger": logger, "msg": msg, **extra}) + "\n"


def write_logs(log_dir: Path) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / "gateway.log").write_text(
        rec("2026-05-26T08:00:01.000Z", "info", "hearthnet.gateway", "listening", port=7080)
        + rec("2026-05-26T08:00:04.000Z", "warning", "hearthnet.gateway", "peer unreachable", peer="x")
    )
    (log_dir / "llm_00.log").write_text(
        rec("2026-05-26T08:00:02.000Z", "debug", "hearthnet.services.llm", "loading")
        + rec("2026-05-26T08:00:03.000Z", "error", "hearthnet.worker", "crashed")
        + "Traceback (most recent call last):\n  File \"x.py\", line 1\nImportError: boom\n"
    )
    (log_dir / "broker.log").write_text(rec("2026-05-26T08:00:05.000Z", "info", "hearthnet.broker", "ready"))
    (log_dir / "broker.log.1").write_text(rec("2026-05-26T07:00:00.000Z", "info", "hearthnet.broker", "OLD"))


def msgs(result) -> list[str]:
    return [json.loads(line)["msg"] for line in result.stdout.splitlines()]


def test_log_merges_by_time(runner, env):
    write_logs(env.log_dir)
    result = invoke(runner, "log", "--json")
    assert result.exit_code == 0, result.output
    assert msgs(result) == [
        "OLD", "listening", "loading", "crashed", "Traceback (most recent call last):", '  File "x.py", line 1',
        "ImportError: boom", "peer unreachable", "ready",
    ]  # rotated broker.log.1 is read too (as broker); raw lines stay after their record
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert lines[0]["source"] == "broker"
    raw = lines[4]
    assert raw["raw"] is True and raw["level"] == "error" and raw["source"] == "llm_00"
    assert raw["ts"] == "2026-05-26T08:00:03.000Z"


def test_log_level_filter(runner, env):
    write_logs(env.log_dir)
    assert msgs(invoke(runner, "log", "--json", "--level", "warning")) == [
        "crashed", "Traceback (most recent call last):", '  File "x.py", line 1', "ImportError: boom",
        "peer unreachable"]
    assert "loading" not in msgs(invoke(runner, "log", "--json", "--level", "info"))
    assert "loading" in msgs(invoke(runner, "log", "--json", "--level", "DEBUG"))


def test_log_component_filter(runner, env):
    write_logs(env.log_dir)
    by_stem = msgs(invoke(runner, "log", "--json", "--component", "llm_00"))
    assert by_stem[:2] == ["loading", "crashed"] and len(by_stem) == 5
    assert msgs(invoke(runner, "log", "--json", "--component", "llm")) == by_stem  # program prefix
    assert msgs(invoke(runner, "log", "--json", "--component", "hearthnet.broker")) == ["OLD", "ready"]  # logger (and its rotated file)
    assert msgs(invoke(runner, "log", "--json", "--component", "hearthnet.services")) == ["loading"]  # logger prefix
    both = msgs(invoke(runner, "log", "--json", "--component", "broker", "--component", "gateway"))
    assert both == ["OLD", "listening", "peer unreachable", "ready"]
    assert msgs(invoke(runner, "log", "--json", "--component", "llm", "--level", "error"))[0] == "crashed"


def test_log_last_n_and_human_format(runner, env):
    write_logs(env.log_dir)
    result = invoke(runner, "log", "-n", "2")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert "WARNING" in lines[0] and "gateway" in lines[0] and "peer unreachable" in lines[0] and "peer=x" in lines[0]
    assert "broker" in lines[1] and "hearthnet.broker: ready" in lines[1]


def test_log_no_files(runner, env):
    result = invoke(runner, "log")
    assert result.exit_code == 0
    assert "no matching log lines" in result.stderr


def _wait_for_text(buf: io.StringIO, text: str) -> None:
    wait_for(lambda: text in buf.getvalue(), 5, 0.02, message=lambda: f"{text!r} in:\n{buf.getvalue()}")


def test_log_follow_appends_rotation_truncation_and_new_files(env):
    log_dir = env.log_dir
    log_dir.mkdir(parents=True)
    gw = log_dir / "gateway.log"
    gw.write_text(rec("2026-05-26T08:00:01.000Z", "info", "hearthnet.gateway", "before-start"))
    buf = io.StringIO()
    stop = threading.Event()
    out = Output(out=buf, err=io.StringIO())
    thread = threading.Thread(
        target=show_log, args=(log_dir,),
        kwargs=dict(level="info", components=(), lines=10, follow=True, as_json=True, out=out, stop=stop),
        daemon=True,
    )
    thread.start()
    try:
        _wait_for_text(buf, "before-start")
        # appended line, written in two pieces: only whole lines are shown
        with open(gw, "a") as fh:
            fh.write(rec("2026-05-26T08:00:02.000Z", "info", "hearthnet.gateway", "appended")[:20])
            fh.flush()
            time.sleep(0.4)
            assert "appended" not in buf.getvalue()
            fh.write(rec("2026-05-26T08:00:02.000Z", "info", "hearthnet.gateway", "appended")[20:])
        _wait_for_text(buf, "appended")
        # filtered live: a debug line never shows
        with open(gw, "a") as fh:
            fh.write(rec("2026-05-26T08:00:02.500Z", "debug", "hearthnet.gateway", "too-chatty"))
        # rotation: the old file gets a last line, is renamed, a new file takes its name
        with open(gw, "a") as fh:
            fh.write(rec("2026-05-26T08:00:03.000Z", "info", "hearthnet.gateway", "last-in-old"))
        os.rename(gw, log_dir / "gateway.log.1")
        gw.write_text(rec("2026-05-26T08:00:04.000Z", "info", "hearthnet.gateway", "first-in-new"))
        _wait_for_text(buf, "first-in-new")
        assert "last-in-old" in buf.getvalue()
        # truncation in place (copytruncate); the follower has read past the new size
        with open(gw, "a") as fh:
            for i in range(3):
                fh.write(rec("2026-05-26T08:00:04.500Z", "debug", "hearthnet.gateway", f"filler-{i}"))
        time.sleep(0.5)
        with open(gw, "w") as fh:
            fh.write(rec("2026-05-26T08:00:05.000Z", "info", "hearthnet.gateway", "after-truncate"))
        _wait_for_text(buf, "after-truncate")
        # a component whose log file appears only now
        (log_dir / "llm_00.log").write_text(rec("2026-05-26T08:00:06.000Z", "error", "hearthnet.worker", "new-worker"))
        _wait_for_text(buf, "new-worker")
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    got = [json.loads(line)["msg"] for line in buf.getvalue().splitlines()]
    assert got == ["before-start", "appended", "last-in-old", "first-in-new", "after-truncate", "new-worker"]


def test_log_follow_waits_for_missing_dir(env):
    buf, err = io.StringIO(), io.StringIO()
    stop = threading.Event()
    out = Output(out=buf, err=err)
    thread = threading.Thread(
        target=show_log, args=(env.log_dir,),
        kwargs=dict(level=None, components=("broker",), lines=10, follow=True, as_json=False, out=out, stop=stop),
        daemon=True,
    )
    thread.start()
    try:
        _wait_for_text(err, "waiting for log files")
        env.log_dir.mkdir(parents=True)
        (env.log_dir / "gateway.log").write_text(rec("2026-05-26T08:00:01.000Z", "info", "hearthnet.gateway", "other"))
        (env.log_dir / "broker.log").write_text(rec("2026-05-26T08:00:02.000Z", "info", "hearthnet.broker", "mine"))
        _wait_for_text(buf, "mine")
    finally:
        stop.set()
        thread.join(5)
    assert "other" not in buf.getvalue()


def test_log_follow_ctrl_c_exits_0(runner, env, monkeypatch):
    from hearthnet import logview

    def interrupted(self, emit, stop=None, interval=0.25):
        raise KeyboardInterrupt

    monkeypatch.setattr(logview.LogReader, "follow", interrupted)
    write_logs(env.log_dir)
    result = invoke(runner, "log", "--follow", "-n", "1")
    assert result.exit_code == 0
    assert "ready" in result.stdout
