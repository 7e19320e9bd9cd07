"""CLI start-up cost: `hearthnet version` and `hearthnet status --json` vs `python -c pass`.

    .venv/bin/python bench/cli_latency.py [--runs 30]

`status` is measured against a running node (a throw-away one this script starts on a free
loopback port). Median wall time per command. Targets (issue 2): version <= 60 ms,
status <= 100 ms.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hearthnet.testing.nodes import Node


def wall_ms(cmd: list[str], env: dict[str, str], runs: int) -> dict[str, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    exe = str(Path(sys.executable).parent / "hearthnet")
    with tempfile.TemporaryDirectory(prefix="hn-bench-") as tmp:
        node = Node(Path(tmp), "bench")
        node.init()
        try:
            node.start()
            raw = wall_ms([sys.executable, "-c", "pass"], node.env, args.runs)
            version = wall_ms([exe, "version"], node.env, args.runs)
            status = wall_ms([exe, "status", "--json"], node.env, args.runs)
            status_h = wall_ms([exe, "status"], node.env, args.runs)
        finally:
            node.cleanup()
    out = {"python_c_pass": raw, "version": version, "status_json": status, "status_table": status_h,
           "ratios": {"version_over_raw": round(version["median_ms"] / raw["median_ms"], 2),
                      "status_over_raw": round(status["median_ms"] / raw["median_ms"], 2)}}
    print(json.dumps(out, indent=2))
    print(f"\nversion {version['median_ms']} ms, status --json {status['median_ms']} ms, "
          f"status (table) {status_h['median_ms']} ms; python -c pass {raw['median_ms']} ms")


if __name__ == "__main__":
    main()
