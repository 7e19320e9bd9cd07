"""A node started from any directory runs its own code: a file in the owner's working
directory named like a module a worker imports (here `attr`, which aiohttp needs, and
`msgpack`) must not be imported by the node's processes (they run with `python -P`)."""
from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SHADOW = 'raise SystemExit("the node imported %s from the working directory")\n'


def test_node_ignores_modules_in_the_working_directory(make_node, tmp_path: Path) -> None:
    here = tmp_path / "downloads"
    here.mkdir()
    for name in ("attr", "msgpack"):
        (here / f"{name}.py").write_text(SHADOW % name)
    node = make_node("cwd")
    node.init()
    node.cwd = here  # `hearthnet run` from that directory; supervisord and workers inherit it
    node.start(wait_workers=("broker", "gateway", "ledger", "discovery"))
    node.cwd = None
    status = node.api("/api/v1/status")
    assert all(w["state"] == "RUNNING" for w in status["workers"]), status["workers"]
    restarts = {w["name"]: w.get("restarts") for w in status["workers"] if w.get("restarts")}
    assert not restarts, restarts
