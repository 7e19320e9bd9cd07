"""CLI start-up cost: `hearthnet version`, `status --json` and `status` vs `python -c pass`.

    .venv/bin/python bench/cli_latency.py [--runs 30]

`status` is measured against a running node (a throw-away one this script starts on a free
loopback port). Median wall time per command, and the median CPU time (user + sys) the
command used, which a loaded machine disturbs less. Commands run as `python -m hearthnet`
(what the console script runs too, hearthnet.fastcli:main), with bytecode caching on and one
warm-up run, as an installed node has its .pyc files. Targets: version <= 60 ms (issue 2),
status --json <= 60 ms and the status table <= 100 ms (issue 11).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hearthnet.testing.nodes import Node


def wall_ms(cmd: list[str], env: dict[str, str], runs: int) -> dict[str, float]:
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)  # warm-up
    times, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append((time.perf_counter() - t0) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
            "cpu_median_ms": round(statistics.median(cpu), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    exe = [sys.executable, "-m", "hearthnet"]
    with tempfile.TemporaryDirectory(prefix="hn-bench-") as tmp:
        node = Node(Path(tmp), "bench")
        node.init()
        try:
            node.start()
            env = {k: v for k, v in node.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
            raw = wall_ms([sys.executable, "-c", "pass"], env, args.runs)
            version = wall_ms([*exe, "version"], env, args.runs)
            status = wall_ms([*exe, "status", "--json"], env, args.runs)
            status_h = wall_ms([*exe, "status"], env, args.runs)
        finally:
            node.cleanup()
    out = {"python_c_pass": raw, "version": version, "status_json": status, "status_table": status_h,
           "ratios": {"version_over_raw": round(version["median_ms"] / raw["median_ms"], 2),
                      "status_over_raw": round(status["median_ms"] / raw["median_ms"], 2),
                      "status_table_over_raw": round(status_h["median_ms"] / raw["median_ms"], 2)}}
    print(json.dumps(out, indent=2))
    print(f"\nversion {version['median_ms']} ms, status --json {status['median_ms']} ms, "
          f"status (table) {status_h['median_ms']} ms; python -c pass {raw['median_ms']} ms "
          f"(cpu: {version['cpu_median_ms']}, {status['cpu_median_ms']}, {status_h['cpu_median_ms']}, "
          f"{raw['cpu_median_ms']} ms)")


if __name__ == "__main__":
    main()
