"""Restart without downtime: a steady stream of llm.chat calls while the LLM worker is
killed with SIGKILL, with 1 and with 2 replicas.

    .venv/bin/python bench/restart.py [--seconds 6]

Uses the real llama.cpp engine on a tiny random-weight GGUF (no download). Prints failed
calls, worst and p50 latency, and as the raw baseline the supervisord respawn time
measured in the same run (kill -9 until the new worker process exists).
Targets (issue 2): 0 failed; worst <= 1.5 s with 1 replica, <= 50 ms with 2.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil

from hearthnet.testing.nodes import Node
from hearthnet.testing.tiny_gguf import write_tiny_llama_gguf

BODY = {"params": {}, "input": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8,
                                "stream": False}}


def respawn_seconds(node: Node, old_pid: int, name: str, t_kill: float) -> float | None:
    """Raw baseline: from the kill until supervisord has a new process for the worker."""
    sup = next(p for p in psutil.Process(node.proc.pid).children() if "supervisord" in " ".join(p.cmdline()))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for child in sup.children():
            try:
                if child.pid != old_pid and child.environ().get("HEARTHNET_WORKER_NAME") == name:
                    return time.monotonic() - t_kill
            except psutil.Error:
                continue
        time.sleep(0.002)
    return None


def run_case(gguf: Path, replicas: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="hn-bench-") as tmp:
        node = Node(Path(tmp), "bench")
        node.init()
        node.add_config(f'[[llm.backends]]\nname = "llama_cpp"\nmodel = "tiny"\nmodel_path = "{gguf}"\n')
        node.env["HEARTHNET_WORKERS_LLM_REPLICAS"] = str(replicas)
        try:
            node.start(wait_workers=("broker", "gateway", "llm"))
            while sum(c["providers"] for c in node.api("/api/v1/capabilities")["capabilities"]
                      if c["name"] == "llm.chat") < replicas:
                time.sleep(0.05)
            victim = next(w for w in node.api("/api/v1/workers")["workers"] if w["program"] == "llm")
            results: list[tuple[int, float, float]] = []
            stop = threading.Event()

            def caller() -> None:
                while not stop.is_set():
                    t0 = time.monotonic()
                    try:
                        status, _ = node.call("llm.chat", BODY, timeout=30)
                    except OSError:
                        status = -1
                    results.append((status, time.monotonic() - t0, t0))

            threads = [threading.Thread(target=caller) for _ in range(replicas)]
            for t in threads:
                t.start()
            time.sleep(seconds / 3)
            t_kill = time.monotonic()
            os.kill(victim["pid"], signal.SIGKILL)
            respawn = respawn_seconds(node, victim["pid"], victim["name"], t_kill)
            time.sleep(seconds * 2 / 3)
            stop.set()
            for t in threads:
                t.join()
        finally:
            node.cleanup()
    lat = [r[1] for r in results]
    around = [r[1] for r in results if r[2] + r[1] >= t_kill]  # calls in flight at or after the kill
    return {"replicas": replicas, "calls": len(results), "failed": sum(1 for r in results if r[0] != 200),
            "worst_ms": round(max(lat) * 1000, 1), "p50_ms": round(statistics.median(lat) * 1000, 2),
            "worst_after_kill_ms": round(max(around) * 1000, 1) if around else None,
            "raw_supervisord_respawn_ms": round(respawn * 1000, 1) if respawn else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=6.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hn-gguf-") as tmp:
        gguf = write_tiny_llama_gguf(Path(tmp) / "tiny.gguf")
        cases = [run_case(gguf, r, args.seconds) for r in (1, 2)]
    for c in cases:
        if c["raw_supervisord_respawn_ms"]:
            c["worst_over_respawn"] = round(c["worst_ms"] / c["raw_supervisord_respawn_ms"], 2)
    print(json.dumps(cases, indent=2))
    for c in cases:
        print(f"{c['replicas']} replica(s): {c['failed']} failed of {c['calls']} calls, worst "
              f"{c['worst_ms']} ms (p50 {c['p50_ms']} ms; supervisord respawn "
              f"{c['raw_supervisord_respawn_ms']} ms)")


if __name__ == "__main__":
    main()
