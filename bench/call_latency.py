"""Local call via the gateway vs the raw aiohttp -> ZeroMQ -> worker pipeline.

    .venv/bin/python bench/call_latency.py [--requests 20000]

Starts a real node (supervisord, broker, gateway, the experimental.echo worker) in a
throw-away XDG home on a free loopback port, and the raw pipeline of
bench/raw_pipeline.py, then drives both with the same keep-alive client: sequential calls
for p50/p99, then 16 in flight for throughput. Prints absolute figures and the ratios.
Targets (issue 2): p50 <= 1.5 ms, >= 2 500 req/s at 16 in flight, <= 1.3x raw.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import run_load  # noqa: E402

from hearthnet.testing.nodes import Node, free_port  # noqa: E402

BODY = {"params": {}, "input": {"text": "x" * 150}}


def measure(url: str, headers: dict[str, str], n: int) -> dict[str, dict]:
    seq = run_load(url, headers, BODY, n // 4, 1)
    par = run_load(url, headers, BODY, n, 16)
    return {"sequential": seq.summary(), "16_in_flight": par.summary()}


def raw(n: int) -> dict[str, dict]:
    here = Path(__file__).resolve().parent
    run_dir = tempfile.mkdtemp(prefix="hn-raw-", dir="/tmp")
    port = free_port()
    procs = [subprocess.Popen([sys.executable, str(here / "raw_pipeline.py"), role, run_dir, str(port)])
             for role in ("broker", "worker", "gateway")]
    try:
        time.sleep(1.5)
        return measure(f"http://127.0.0.1:{port}/bus/v1/call", {}, n)
    finally:
        for p in procs:
            p.kill()
            p.wait()


def ours(n: int) -> dict[str, dict]:
    with tempfile.TemporaryDirectory(prefix="hn-bench-") as tmp:
        node = Node(Path(tmp), "bench")
        node.env["HEARTHNET_WORKERS_ECHO"] = "true"
        node.init()
        try:
            node.start(wait_workers=("broker", "gateway", "echo"))
            headers = {"Authorization": f"Bearer {node.token()}",
                       "X-HearthNet-Capability": "experimental.echo",
                       "Content-Type": "application/json"}
            return measure(f"http://127.0.0.1:{node.port}/bus/v1/call", headers, n)
        finally:
            node.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    args = ap.parse_args()
    r = raw(args.requests)
    o = ours(args.requests)
    ratio = {
        "p50_ratio_sequential": round(o["sequential"]["p50_ms"] / r["sequential"]["p50_ms"], 2),
        "p50_ratio_16": round(o["16_in_flight"]["p50_ms"] / r["16_in_flight"]["p50_ms"], 2),
        "rps_ratio_raw_over_ours": round(r["16_in_flight"]["rps"] / o["16_in_flight"]["rps"], 2),
    }
    print(json.dumps({"raw": r, "hearthnet": o, "ratios": ratio}, indent=2))
    print(f"\ngateway call p50 {o['sequential']['p50_ms']} ms (raw {r['sequential']['p50_ms']} ms, "
          f"{ratio['p50_ratio_sequential']}x); {o['16_in_flight']['rps']} req/s at 16 in flight "
          f"(raw {r['16_in_flight']['rps']}, raw/ours {ratio['rps_ratio_raw_over_ours']}x)")


if __name__ == "__main__":
    main()
