"""hearthnet.statusview: the status table as plain text, styled only where it should be."""
from __future__ import annotations

import io

import pytest

from hearthnet import statusview
from tests.unit.cli.conftest import capability, status_doc, worker


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty, env, want", [
    (False, {}, ""),
    (True, {}, "all"),
    (True, {"NO_COLOR": "1"}, "plain"),
    (True, {"NO_COLOR": ""}, "all"),
    (True, {"TERM": "dumb"}, ""),
    (False, {"FORCE_COLOR": "1"}, "all"),
    (False, {"FORCE_COLOR": "1", "NO_COLOR": "1"}, "plain"),
])
def test_styles_follow_the_terminal_no_color_and_force_color(tty: bool, env: dict[str, str], want: str) -> None:
    assert statusview.wants_style(_Tty() if tty else io.StringIO(), env) == want


def _doc() -> dict:
    return status_doc([worker("broker"), worker("llm_00", state="FATAL", log_tail=["boom"]),
                       worker("rag", healthy=False, served=123456, note="a\nb")],
                      [capability(f"capability{i}.name") for i in range(40)])


def test_no_colour_keeps_bold_and_dim_only() -> None:
    plain = statusview.render(_doc(), styles="plain")
    assert "\x1b[1m" in plain and "\x1b[2m" in plain
    assert not any(f"\x1b[{c}m" in plain for c in ("31", "32", "33"))
    coloured = statusview.render(_doc(), styles="all")
    assert "\x1b[31mFATAL\x1b[0m" in coloured and "\x1b[32mRUNNING\x1b[0m" in coloured
    assert "\x1b" not in statusview.render(_doc())


def test_the_workers_table_lines_up_and_capabilities_wrap() -> None:
    lines = statusview.render(_doc()).splitlines()
    head = lines.index("Workers") + 1
    header, rows = lines[head], lines[head + 1:head + 4]
    assert header.split() == ["worker", "state", "pid", "uptime", "restarts", "last", "hb", "in-flight",
                              "served", "errors", "note"]
    served_end = header.index("served") + len("served")  # numbers are right-aligned under it
    assert [row[:served_end].split()[-1] for row in rows] == ["12", "12", "123456"]
    assert rows[2].split()[:3] == ["rag", "RUNNING", "(no"] and rows[2].endswith("  a")
    assert all(line == line.rstrip() for line in lines)
    caps = lines[lines.index("Local capabilities (40)") + 1:]
    caps = caps[:next(i for i, line in enumerate(caps) if not line)]
    assert len(caps) > 1 and all(len(line) <= statusview.CAPS_WIDTH and line.startswith("  ") for line in caps)
    assert ", ".join(line.strip().rstrip(",") for line in caps).count("@1.0") == 40


@pytest.mark.parametrize("doc, problems", [
    ({"node": {}, "workers": [], "capabilities": []}, []),
    ({"node": [], "workers": [], "capabilities": {}}, ["node", "capabilities"]),
    ([], ["node", "workers", "capabilities"]),
])
def test_shape_problems(doc: object, problems: list[str]) -> None:
    assert statusview.shape_problems(doc) == problems
