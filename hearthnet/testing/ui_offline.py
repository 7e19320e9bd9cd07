"""The UI with the internet really gone (issue 10): meant to run inside a network namespace
holding only `lo` (hearthnet/testing/netns.py `loopback_namespace`), it starts a real node
WITH its UI worker, opens every tab in Debian's chromium under Playwright, records every
request the page makes and every one that fails WITHOUT routing or blocking anything (a
page reaching for a CDN would really try, fail, and be recorded), saves a screenshot per
tab, always stops its node, and prints a JSON report on stdout:

    ip netns exec NS python -P -m hearthnet.testing.ui_offline --root DIR --shots DIR

Report keys: `namespace` {`links`: the interfaces this process sees, `outside`: what a TCP
connect to an internet address gave}, `tabs` {tab name: its element was found},
`requests`, `failed`, `outside` (URLs to a host other than 127.0.0.1/localhost),
`screenshots` (paths), `traceback` (the page showed one), `error` (what stopped the run,
or null), `problems` (`problems()` of the rest: empty when the UI is clean offline).
Exit status 0 when `problems` is empty, 1 otherwise.
Used by tests/integration/test_ui_offline_netns.py."""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

from hearthnet.testing.browser import TABS, UI_WORKERS, RequestLog, UiNode, launch_chromium

TIMEOUT_MS = 30_000
SETTLE_MS = 1500  # after a tab's element shows: its own load event has run
# an internet address: with only `lo` there is no route to it (ENETUNREACH at once)
OUTSIDE_PROBE = ("1.1.1.1", 443)


def namespace_view() -> dict[str, Any]:
    """The interfaces this process sees (`ip netns exec` mounts the namespace's /sys) and
    what connecting to an outside address gives: evidence the run really was cut off."""
    links = sorted(os.listdir("/sys/class/net"))
    try:
        with socket.create_connection(OUTSIDE_PROBE, timeout=3):
            outside = "connected"
    except OSError as e:
        outside = f"{type(e).__name__}: {e}"
    return {"links": links, "outside": outside}


def problems(report: dict[str, Any]) -> list[str]:
    """What is wrong with a run's report; empty when every tab loaded, something was
    requested, nothing failed, nothing went to another host and the screenshots exist."""
    found = []
    if report.get("error"):
        found.append(f"the run stopped: {report['error']}")
    tabs = report.get("tabs", {})
    if missing := [name for name in TABS if not tabs.get(name)]:
        found.append(f"tabs not loaded: {missing}")
    if not report.get("requests"):
        found.append("the page made no request")
    if report.get("failed"):
        found.append(f"failed requests: {report['failed']}")
    if report.get("outside"):
        found.append(f"requests to other hosts: {report['outside']}")
    if report.get("traceback"):
        found.append("the page shows a traceback")
    shots = report.get("screenshots", [])
    if not shots or not all(Path(s).is_file() for s in shots):
        found.append(f"screenshots missing: {shots}")
    return found


def visit_tabs(browser: Any, url: str, shots: Path, report: dict[str, Any]) -> None:
    """Open the page, then every tab; fills `report` as it goes, so a timeout keeps what
    was seen before it."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    reqs = RequestLog(requests=report["requests"], failed=report["failed"], outside=report["outside"])
    reqs.watch(page, block=False)
    # not "networkidle": the live-refresh timer ticks every second while the page is open
    page.goto(url, wait_until="load")
    page.get_by_text("HearthNet ·").first.wait_for()
    shots.mkdir(parents=True, exist_ok=True)
    for name, element in TABS.items():
        report["tabs"][name] = False
        page.get_by_role("tab", name=name).click()
        page.locator(f"#{element}").wait_for()
        page.wait_for_timeout(SETTLE_MS)
        report["tabs"][name] = True
        path = shots / f"offline-{name.lower()}.png"
        page.screenshot(path=str(path), full_page=True)
        report["screenshots"].append(str(path))
    report["traceback"] = "Traceback" in page.content()


def run(root: Path, shots: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    report: dict[str, Any] = {"namespace": namespace_view(), "tabs": {}, "requests": [], "failed": [],
                              "outside": [], "screenshots": [], "traceback": False, "error": None}
    node = UiNode(root, "offline")
    try:
        node.init()
        node.start(wait_workers=UI_WORKERS)
        with sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                visit_tabs(browser, node.ui_url, shots, report)
            finally:
                browser.close()
    except Exception as e:  # the report says what stopped the run; the test shows it
        report["error"] = f"{type(e).__name__}: {e}\n{traceback.format_exc()[-3000:]}"
    finally:
        node.cleanup()
    report["problems"] = problems(report)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hearthnet.testing.ui_offline", description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, required=True, help="the node's directory (XDG dirs go under it)")
    ap.add_argument("--shots", type=Path, required=True, help="where the screenshots go")
    args = ap.parse_args(argv)
    report = run(args.root, args.shots)
    print(json.dumps(report, indent=1))
    return 0 if not report["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
