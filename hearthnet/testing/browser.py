"""Real-browser helpers for the UI tests and bench/ui.py: a node started WITH its UI on
a free port, and Debian's chromium driven by Playwright (its own browser download is not
available here) with every request recorded and anything that would leave 127.0.0.1
blocked and remembered."""
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

    def watch(self, page: Any) -> None:
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("requestfailed", self._failed)
        page.on("response", lambda r: self.failed.append(f"{r.url} (HTTP {r.status})") if r.status >= 400 else None)
        page.route("**/*", self._route)

    def _failed(self, request: Any) -> None:
        # Gradio answers each queued event, and reports an upload's progress, over a
        # Server-Sent-Events request that the page itself closes once it has what it needs:
        # chromium reports that as ERR_ABORTED. Any other failure counts.
        if "ERR_ABORTED" in str(request.failure) and any(
                p in request.url for p in ("/gradio_api/queue/data", "/gradio_api/upload_progress")):
            return
        self.failed.append(f"{request.url} ({request.failure})")

    def _route(self, route: Any) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob") or parts.hostname in LOCAL_HOSTS:
            route.continue_()
            return
        self.outside.append(url)
        route.abort()


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                      args=["--no-sandbox", "--disable-dev-shm-usage"])
