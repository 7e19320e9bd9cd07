"""The LLM worker inside a real node (llama.cpp on a tiny random-weight GGUF): CLI calls,
streaming, wire errors, and a kill -9 of the worker under a steady stream of calls."""
from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from hearthnet.testing.waiting import wait_for

pytestmark = pytest.mark.integration

CHAT = {"params": {}, "input": {"messages": [{"role": "user", "content": "hello"}],
                                "max_tokens": 8, "seed": 1}}


def llm_node(make_node, tiny_gguf, replicas: int = 1):
    node = make_node("llm")
    node.init()
    node.add_config(f'[[llm.backends]]\nname = "llama_cpp"\nmodel = "tiny"\nmodel_path = "{tiny_gguf}"\n')
    node.env["HEARTHNET_WORKERS_LLM_REPLICAS"] = str(replicas)
    node.start(wait_workers=("broker", "gateway", "llm"))
    wait_caps(node, "llm.chat", replicas)
    return node


def wait_caps(node, name: str, providers: int, timeout: float = 30) -> None:
    wait_for(lambda: any(c["name"] == name and c["providers"] >= providers
                         for c in node.api("/api/v1/capabilities")["capabilities"]),
             timeout, message=f"{name} with {providers} providers")


def test_call_streams_stdout_then_zero(make_node, tiny_gguf):
    node = llm_node(make_node, tiny_gguf)
    r = node.cli("call", "llm.chat@1.0", "--stream", "--body", json.dumps(CHAT))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() != ""  # the tokens (gibberish from random weights)
    traces = node.api("/api/v1/traces?n=1&capability=llm.chat")["traces"]
    assert traces[-1]["result"] == "ok"
    assert traces[-1]["tokens_out"] > 0
    plain = node.cli("call", "llm.chat", "--body", json.dumps({**CHAT, "input": {**CHAT["input"], "stream": False}}))
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["output"]["message"]["role"] == "assistant"


def test_call_returns_nonzero_on_wire_error(make_node, tiny_gguf):
    node = llm_node(make_node, tiny_gguf)
    empty = {"params": {}, "input": {"messages": []}}
    r = node.cli("call", "llm.chat", "--body", json.dumps(empty))
    assert r.returncode == 2 and "messages" in r.stderr and "(bad_request)" in r.stderr
    unknown = {"params": {"model": "no-such-model"}, "input": CHAT["input"]}
    r = node.cli("call", "llm.chat", "--body", json.dumps(unknown))
    assert r.returncode == 1 and "no-such-model" in r.stderr and "(not_implemented)" in r.stderr
    r = node.cli("call", "llm.chatt", "--body", json.dumps(CHAT))
    assert r.returncode == 1 and "llm.chat" in r.stderr  # not_found names the close match
    assert "Traceback" not in r.stderr


class SteadyCaller:
    """Callers sending non-stream llm.chat calls back to back, recording every outcome."""

    def __init__(self, node, threads: int) -> None:
        self.node = node
        self.stop = threading.Event()
        self.results: list[tuple[int, float]] = []
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def _loop(self) -> None:
        body = {**CHAT, "input": {**CHAT["input"], "stream": False}}
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                status, _ = self.node.call("llm.chat", body, timeout=30)
            except OSError:
                status = -1
            self.results.append((status, time.monotonic() - t0))

    def __enter__(self) -> "SteadyCaller":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


@pytest.mark.parametrize("replicas", [1, 2])
def test_llm_worker_kill_no_failed_calls(make_node, tiny_gguf, replicas):
    node = llm_node(make_node, tiny_gguf, replicas)
    workers = [w for w in node.api("/api/v1/workers")["workers"] if w["program"] == "llm"]
    victim = workers[0]
    with SteadyCaller(node, threads=replicas) as caller:
        wait_for(lambda: len(caller.results) >= 3 * replicas, 20, 0.05, message="the stream of calls flowing")
        before = len(caller.results)
        os.kill(victim["pid"], signal.SIGKILL)
        time.sleep(3.0)
    assert before > 0
    failed = [r for r in caller.results if r[0] != 200]
    assert failed == [], f"{len(failed)} failed calls of {len(caller.results)}"
    assert len(caller.results) > before  # calls kept completing after the kill
    after = next(w for w in node.api("/api/v1/workers")["workers"] if w["name"] == victim["name"])
    assert after["pid"] != victim["pid"]
    assert after["restarts"] >= 1
    r = node.cli("status", "--json")
    assert r.returncode == 0
