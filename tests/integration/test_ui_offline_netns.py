"""The UI with the outside really cut off (issue 10, point 1): test_ui_browser.py blocks
every request that would leave 127.0.0.1; here nothing is blocked, the page runs where
nothing can leave. A fresh network namespace holding only `lo` (netns.py
`loopback_namespace`) runs hearthnet/testing/ui_offline.py: a real node with its UI and
Debian's chromium under Playwright, every tab opened, every request and every failed one
recorded, a JSON report printed. Needs root, `ip` and the browser; skips with the reason
otherwise. The namespace and whatever still runs in it are removed also when the test fails."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hearthnet.testing.browser import TABS, browser_missing
from hearthnet.testing.netns import in_netns, loopback_namespace, remove_stale, unavailable_reason

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
STEM = "hnui"  # namespaces hnui<pid>-n1
RUN_SECONDS = 600


@pytest.fixture
def only_loopback():
    """The name of a fresh namespace with only `lo`; deleted, with everything in it
    killed, when the test ends however it ends."""
    reason = unavailable_reason() or browser_missing()
    if reason:
        pytest.skip(reason)
    remove_stale(STEM)  # what a crashed run left (prefixes still locked by a live run are kept)
    with loopback_namespace(f"{STEM}{os.getpid()}") as ns:
        yield ns


def test_every_tab_loads_in_a_namespace_with_only_loopback(only_loopback, tmp_path) -> None:
    argv = in_netns(only_loopback, [sys.executable, "-P", "-m", "hearthnet.testing.ui_offline",
                                    "--root", str(tmp_path / "node"), "--shots", str(ARTIFACTS)])
    r = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_SECONDS)
    assert r.stdout.strip(), f"exit {r.returncode}, no report; stderr: {r.stderr[-3000:]}"
    report = json.loads(r.stdout)
    # the run really was cut off: no interface but lo, no route to the internet
    assert report["namespace"]["links"] == ["lo"], report["namespace"]
    assert "unreachable" in report["namespace"]["outside"].lower(), report["namespace"]
    assert report["error"] is None, report["error"]
    assert report["tabs"] == {name: True for name in TABS}
    assert report["requests"], "the page made no request"
    assert report["failed"] == [], f"failed requests: {report['failed']}"
    assert report["outside"] == [], f"requests to other hosts: {report['outside']}"
    assert report["screenshots"] and all(Path(s).is_file() and Path(s).parent == ARTIFACTS for s in report["screenshots"])
    assert report["problems"] == [] and r.returncode == 0, (report["problems"], r.stderr[-3000:])
