"""The UI: how long until it answers after `hearthnet run`, and how fast an Ask answer
starts in the browser compared with the same model through the CLI.

    .venv/bin/python bench/ui.py [--runs 3] [--asks 3]

Needs the `ui` and `dev` extras and Debian's chromium (scripts/test installs them). One
real node on this host (throw-away XDG homes, loopback, multicast off), the tiny
random-weight GGUF as its LLM and a one-page document ingested into corpus `bench`.

- startup (each of --runs): `hearthnet run` (with the UI) is started; the raw baseline is
  the moment its local API answers `GET /health` (the gateway), the measured one the moment
  the UI answers `GET /` with 200. Both from the Popen.
- first byte (each of --asks, alternating): in chromium (Playwright), the Ask tab's button
  is clicked and the time to the first answer text on the page is taken (rag.ask: retrieval,
  then llm.chat streamed through the local API, Gradio's queue and its SSE to the page);
  the baseline is `hearthnet call llm.chat --stream` with the same question as one user
  message, timed from the spawn to its first byte on stdout (CLI start included).

Prints medians and the ratios to the baselines.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hearthnet.testing.browser import UiNode, browser_missing, launch_chromium
from hearthnet.testing.tiny_gguf import write_tiny_llama_gguf
from hearthnet.testing.waiting import wait_for

QUESTION = "How long should I boil drinking water after a flood?"
DOC = ("# Flood plan\n\nBoil drinking water at a rolling boil for at least one minute after a flood.\n\n"
       "The shelter is the gym of the primary school on Mill Road.\n")
WORKERS = ("broker", "gateway", "ledger", "file", "llm", "embedding", "rag", "ui")


def ui_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def startup(node: UiNode) -> tuple[float, float]:
    """(seconds to the local API's /health, seconds to the UI's page) from the spawn."""
    t0 = time.perf_counter()
    node.proc = subprocess.Popen([node.python, "-m", "hearthnet", "run"], env=node.env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    gateway = wait_for(lambda: (time.perf_counter() - t0) if node.api_socket.exists() and _health(node) else None,
                       120, 0.01, message="local API up")
    ui = wait_for(lambda: (time.perf_counter() - t0) if ui_answers(node.ui_url) else None, 120, 0.02,
                  message="UI up")
    return gateway, ui


def _health(node: UiNode) -> bool:
    try:
        return node.request("/health", auth=False, timeout=1)[0] == 200
    except OSError:
        return False


def cli_first_byte(node: UiNode) -> float:
    body = json.dumps({"params": {}, "input": {"messages": [{"role": "user", "content": QUESTION}],
                                                "max_tokens": 32}})
    t0 = time.perf_counter()
    proc = subprocess.Popen([node.python, "-m", "hearthnet", "call", "llm.chat", "--stream", "--body", body],
                            env=node.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    proc.stdout.read(1)
    took = time.perf_counter() - t0
    proc.communicate(timeout=120)
    return took


def ui_first_byte(page) -> float:
    page.locator("#ask-answer").evaluate("e => e.setAttribute('data-seen', '')")
    t0 = time.perf_counter()
    page.locator("#ask-send").click()
    page.wait_for_function("document.querySelector('#ask-answer').innerText.trim().length > 0",
                           timeout=120_000, polling=5)
    took = time.perf_counter() - t0
    page.locator("#ask-notice").get_by_text("Answered by").wait_for(timeout=120_000)
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--asks", type=int, default=3)
    args = parser.parse_args(argv)
    console = Console()
    why = browser_missing()
    if why:
        console.print(f"[red]cannot run: {why}")
        return 1
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        gguf = write_tiny_llama_gguf(root / "tiny.gguf")
        node = UiNode(root / "n", "bench")
        starts, asks, clis = [], [], []
        try:
            node.init()
            node.add_config(f'[[llm.backends]]\nname = "llama_cpp"\nmodel = "tiny"\nmodel_path = "{gguf}"\n'
                            'ctx = 16384\n')
            node.env.update({"HEARTHNET_RAG_RELEVANCE_THRESHOLD": "0.0"})
            for _ in range(args.runs):
                starts.append(startup(node))
                node.stop()
            node.start(wait_workers=WORKERS)
            (root / "doc.md").write_text(DOC)
            node.cli_json("rag", "ingest", str(root / "doc.md"), "--corpus", "bench", timeout=300)
            with sync_playwright() as p:
                browser = launch_chromium(p)
                page = browser.new_page()
                page.goto(node.ui_url, wait_until="load")
                page.get_by_role("tab", name="Ask").click()
                page.locator("#ask-question textarea").fill(QUESTION)
                page.locator("#ask-corpus textarea, #ask-corpus input").first.fill("bench")
                ui_first_byte(page)  # warm-up: model load, first embedding
                cli_first_byte(node)
                for _ in range(args.asks):
                    asks.append(ui_first_byte(page))
                    clis.append(cli_first_byte(node))
                browser.close()
        finally:
            node.cleanup()

    gw = statistics.median(s[0] for s in starts)
    ui = statistics.median(s[1] for s in starts)
    table = Table(title="UI (medians)")
    for col in ("measure", "baseline", "UI", "ratio"):
        table.add_column(col)
    table.add_row("`hearthnet run` → answering", f"local API {gw:.2f} s", f"UI page {ui:.2f} s", f"{ui / gw:.2f}×")
    ask, cli = statistics.median(asks), statistics.median(clis)
    table.add_row("first byte of an answer", f"CLI llm.chat {cli * 1000:.0f} ms", f"UI Ask {ask * 1000:.0f} ms",
                  f"{ask / cli:.2f}×")
    console.print(table)
    console.print(f"startup runs (gateway, ui) s: {[(round(a, 2), round(b, 2)) for a, b in starts]}")
    console.print(f"UI first byte ms: {[round(a * 1000) for a in asks]}; CLI: {[round(c * 1000) for c in clis]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
