"""The offline UI run's bookkeeping (hearthnet/testing/ui_offline.py, browser.RequestLog)
with fake requests: a page reaching for a CDN is caught, a clean run has no problems."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from hearthnet.testing.browser import TABS, RequestLog, is_local
from hearthnet.testing.ui_offline import problems

FONT = "https://fonts.googleapis.com/css2?family=Inter:wght@400;600&display=swap"


class FakePage:
    """Records what RequestLog.watch hooks up, so a test can fire the events."""

    def __init__(self) -> None:
        self.handlers: dict[str, object] = {}
        self.routed = False

    def on(self, event: str, handler: object) -> None:
        self.handlers[event] = handler

    def route(self, pattern: str, handler: object) -> None:
        self.routed = True


def clean_report(tmp_path: Path) -> dict:
    shot = tmp_path / "offline-ask.png"
    shot.write_bytes(b"png")
    return {"tabs": {name: True for name in TABS}, "requests": ["http://127.0.0.1:7860/"], "failed": [],
            "outside": [], "screenshots": [str(shot)], "traceback": False, "error": None}


def test_local_urls() -> None:
    for url in ("http://127.0.0.1:7860/", "http://localhost:1/x", "http://[::1]:5/", "data:image/png;base64,AA",
                "blob:http://127.0.0.1:7860/abc"):
        assert is_local(url), url
    for url in (FONT, "https://cdn.jsdelivr.net/x.js", "http://10.0.0.1/", "http://127.0.0.1.example.com/"):
        assert not is_local(url), url


def test_an_unblocked_log_records_a_cdn_request_and_its_failure_without_routing() -> None:
    page, log = FakePage(), RequestLog()
    log.watch(page, block=False)
    assert not page.routed
    page.handlers["request"](SimpleNamespace(url="http://127.0.0.1:7860/"))
    page.handlers["request"](SimpleNamespace(url=FONT))
    page.handlers["requestfailed"](SimpleNamespace(url=FONT, failure="net::ERR_INTERNET_DISCONNECTED"))
    assert log.requests == ["http://127.0.0.1:7860/", FONT]
    assert log.outside == [FONT]
    assert log.failed == [f"{FONT} (net::ERR_INTERNET_DISCONNECTED)"]


def test_a_blocking_log_routes_and_records_outside_requests_once() -> None:
    page, log = FakePage(), RequestLog()
    log.watch(page)
    assert page.routed
    page.handlers["request"](SimpleNamespace(url=FONT))
    assert log.outside == [FONT]


def test_a_clean_run_has_no_problems(tmp_path) -> None:
    assert problems(clean_report(tmp_path)) == []


def test_each_kind_of_trouble_is_a_problem(tmp_path) -> None:
    cases = {
        "failed requests": {"failed": [f"{FONT} (net::ERR_INTERNET_DISCONNECTED)"]},
        "requests to other hosts": {"outside": [FONT]},
        "tabs not loaded: ['Mesh']": {"tabs": {name: name != "Mesh" for name in TABS}},
        "the page made no request": {"requests": []},
        "the run stopped": {"error": "TimeoutError: node healthy"},
        "traceback": {"traceback": True},
        "screenshots missing": {"screenshots": [str(tmp_path / "nothing.png")]},
    }
    for expected, change in cases.items():
        found = problems({**clean_report(tmp_path), **change})
        assert len(found) == 1 and expected in found[0], (expected, found)
