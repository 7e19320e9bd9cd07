"""Real-browser helpers for the UI tests, bench/ui.py and hearthnet/testing/ui_offline.py:
a node started WITH its UI on a free port, and Debian's chromium driven by Playwright (its
own browser download is not available here) with every request recorded, every request to
a host other than 127.0.0.1/localhost remembered, and (unless told not to) blocked."""
from __future__ import annotations

import shutil
import subprocess
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from hearthnet.testing.nodes import Node, free_port
from hearthnet.testing.waiting import wait_for

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
# The UI's tabs and, for each, an element that only exists once the tab is shown.
TABS = {"Ask": "ask-send", "Chat": "chat-refresh", "Market": "market-search", "Files": "files-add",
        "Emergency": "emergency-refresh", "Mesh": "mesh-refresh", "Settings": "settings-invite"}
# The programs a node needs for every tab to have its service.
UI_WORKERS = ("broker", "gateway", "ledger", "governance", "file", "chat", "market", "alerts", "emergency", "ui")


def chromium_path() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if chromium_path() is None:
        return "no chromium on PATH (apt-get install chromium; scripts/test does it as root)"
    try:
        import gradio  # noqa: F401
    except ImportError:
        return "gradio is not installed (pip install -e '.[ui]')"
    return None


class UiNode(Node):
    """A Node whose `hearthnet run` keeps the UI (no --no-ui), on its own free port."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ui_port = free_port()
        self.env["HEARTHNET_UI_PORT"] = str(self.ui_port)

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}/"

    def start(self, *extra: str, wait_workers: tuple[str, ...] = ("broker", "gateway", "ui")) -> None:
        self.proc = subprocess.Popen([self.python, "-m", "hearthnet", "run", *extra], env=self.env,
                                     cwd=self.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.wait_healthy(wait_workers)
        wait_for(self.ui_answers, 90, 0.2, message=lambda: f"{self.name}: UI answering on {self.ui_url}")

    def ui_answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.ui_url, timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False


@dataclass
class RequestLog:
    """Every request the page made, what failed, and what tried to leave the machine."""

    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    def watch(self, page: Any, block: bool = True) -> None:
        """Record the page's requests. block=False routes nothing: a request to the outside
        goes out (and, with no way out, fails and is recorded as failed too)."""
        page.on("request", self._request)
        page.on("requestfailed", self._failed)
        page.on("response", lambda r: self.failed.append(f"{r.url} (HTTP {r.status})") if r.status >= 400 else None)
        if block:
            page.route("**/*", self._route)

    def _request(self, request: Any) -> None:
        self.requests.append(request.url)
        if not is_local(request.url):
            self.outside.append(request.url)

    def _failed(self, request: Any) -> None:
        # Gradio answers each queued event, and reports an upload's progress, over a
        # Server-Sent-Events request that the page itself closes once it has what it needs:
        # chromium reports that as ERR_ABORTED. Any other failure counts.
        if "ERR_ABORTED" in str(request.failure) and any(
                p in request.url for p in ("/gradio_api/queue/data", "/gradio_api/upload_progress")):
            return
        self.failed.append(f"{request.url} ({request.failure})")

    def _route(self, route: Any) -> None:
        # `_request` has recorded an outside request already
        if is_local(route.request.url):
            route.continue_()
        else:
            route.abort()


def is_local(url: str) -> bool:
    """True for a URL that stays on this machine: 127.0.0.1/localhost, data:, blob:."""
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob") or parts.hostname in LOCAL_HOSTS


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                      args=["--no-sandbox", "--disable-dev-shm-usage"])
