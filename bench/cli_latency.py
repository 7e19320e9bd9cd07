"""CLI start-up cost: `hearthnet version`, `status --json` and `status` vs `python -c pass`.

    .venv/bin/python bench/cli_latency.py [--runs 30]

(Run it from a directory without stray .py files: the throw-away node's processes start in
the current directory, which is on their sys.path.)

`status` is measured against a running node (a throw-away one this script starts on a free
loopback port, every service on). Median wall time per command, and the median CPU time
(user + sys) the command used, which a loaded machine disturbs less. The commands run
interleaved, one of each per round, so load that comes and goes hits them alike; the
ratios to `python -c pass` of the same run are the figures to compare across machines.

Commands run as `python -m hearthnet` (the console script's entry, hearthnet.fastcli:main),
with bytecode caching on and one warm-up run, as an installed node has its .pyc files.
`status (click)` is the same table printed through the click CLI (every command but the
two fast status lines goes that way), for reference. `route` is the node's side alone:
`GET /api/v1/status` over its unix socket from a warm process (part of every status
command's wall time, none of its CPU time).

Targets: version <= 60 ms (issue 2), status --json <= 60 ms and the status table <= 100 ms
(issue 11).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hearthnet.localapi import LocalApi  # noqa: E402
from hearthnet.testing.nodes import Node  # noqa: E402

TARGETS_MS = {"version": 60, "status_json": 60, "status_table": 100}


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, CPU ms) of one run of `cmd`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = (time.perf_counter() - t0) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000


def measure(cmds: dict[str, list[str]], env: dict[str, str], runs: int) -> dict[str, dict[str, float]]:
    for cmd in cmds.values():  # warm-up: .pyc files, page cache
        timed(cmd, env)
    walls: dict[str, list[float]] = {k: [] for k in cmds}
    cpus: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(runs):
        for name, cmd in cmds.items():
            wall, cpu = timed(cmd, env)
            walls[name].append(wall)
            cpus[name].append(cpu)
    return {name: {"median_ms": round(statistics.median(walls[name]), 1), "min_ms": round(min(walls[name]), 1),
                   "cpu_median_ms": round(statistics.median(cpus[name]), 1)} for name in cmds}


def route_ms(env: dict[str, str], runs: int) -> dict[str, float]:
    """GET /api/v1/status from this (warm) process: the node's side of `status`."""
    old = dict(os.environ)
    os.environ.update(env)
    try:
        api = LocalApi.for_running_node()
        api.get("/api/v1/status")
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            api.get("/api/v1/status")
            times.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.02)
    finally:
        os.environ.clear()
        os.environ.update(old)
    return {"p50_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    exe = [sys.executable, "-m", "hearthnet"]
    click = [sys.executable, "-c", "from hearthnet.cli import main; main()"]
    cmds = {"python_c_pass": [sys.executable, "-c", "pass"], "version": [*exe, "version"],
            "status_json": [*exe, "status", "--json"], "status_table": [*exe, "status"],
            "status_table_click": [*click, "status"]}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="hn-bench-") as tmp:
        node = Node(Path(tmp), "bench")
        node.init()
        try:
            node.start()
            env = {k: v for k, v in node.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
            out: dict[str, object] = dict(measure(cmds, env, args.runs))
            out["route"] = route_ms(env, args.runs)
        finally:
            node.cleanup()
    raw = out["python_c_pass"]["median_ms"]  # type: ignore[index]
    out["ratios"] = {f"{k}_over_raw": round(out[k]["median_ms"] / raw, 2)  # type: ignore[index]
                     for k in cmds if k != "python_c_pass"}
    out["targets_met"] = {k: out[k]["median_ms"] <= ms for k, ms in TARGETS_MS.items()}  # type: ignore[index]
    out["load_average"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    print(json.dumps(out, indent=2))
    m = {k: out[k] for k in cmds}
    print(f"\nstatus --json {m['status_json']['median_ms']} ms (cpu {m['status_json']['cpu_median_ms']}), "
          f"status table {m['status_table']['median_ms']} ms (cpu {m['status_table']['cpu_median_ms']}), "
          f"version {m['version']['median_ms']} ms (cpu {m['version']['cpu_median_ms']}); "
          f"python -c pass {raw} ms (cpu {m['python_c_pass']['cpu_median_ms']}); "
          f"table via click {m['status_table_click']['median_ms']} ms; "
          f"route p50 {out['route']['p50_ms']} ms; load {out['load_average']}")  # type: ignore[index]


if __name__ == "__main__":
    main()
