"""Memory budget of a headless node: PSS and USS of every process, with every service on.

    .venv/bin/python bench/memory.py [--settle 5] [--json]

Starts a throw-away node (`hearthnet run --no-ui`, hearthnet/testing/nodes.py) with all
services enabled (rag, chat, market, alerts, emergency, and embedding when its model can
run here) and no LLM model, waits until every worker is healthy and `--settle` seconds
more, then prints per process (`hearthnet run`, supervisord, each worker) PSS and USS
(psutil memory_full_info, so children of a worker count too) and the totals. The node is
always stopped.

Targets (issue 11): total <= 300 MiB PSS with no model loaded, and no light worker (every
one but embedding, rag and the llm with a model) over 30 MiB USS. The embedding worker
holds a model (all-MiniLM-L6-v2), so the total is printed with and without it.
Raw baseline of the same run: a bare `python -c "import zmq, msgpack; sleep"` process, the
floor of any worker (ratio = a worker's USS over that floor).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

from hearthnet.testing.nodes import Node

MIB = 1024 * 1024
TOTAL_TARGET_MIB = 300.0
LIGHT_TARGET_MIB = 30.0
ALL_PROGRAMS = ("broker", "gateway", "ledger", "governance", "file", "discovery", "llm",
                "rag", "chat", "market", "alerts", "emergency")


def mem_of(pids: list[int]) -> dict[str, float]:
    """PSS/USS (MiB) summed over a process and whatever it spawned."""
    pss = uss = 0
    for pid in pids:
        try:
            full = psutil.Process(pid).memory_full_info()
        except psutil.Error:
            continue
        pss += full.pss
        uss += full.uss
    return {"pss_mib": round(pss / MIB, 1), "uss_mib": round(uss / MIB, 1)}


def family(pid: int) -> list[int]:
    try:
        return [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return [pid]


def raw_baseline(settle: float) -> dict[str, float]:
    """A bare interpreter holding what every worker needs at the least (zmq + msgpack)."""
    proc = subprocess.Popen([sys.executable, "-c", "import zmq, msgpack, time; time.sleep(120)"])
    try:
        time.sleep(max(1.0, settle / 2))
        return mem_of([proc.pid])
    finally:
        proc.kill()
        proc.wait()


def node_processes(node: Node, status: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per process: `hearthnet run`, supervisord, each worker (with its children)."""
    assert node.proc is not None
    rows = [{"name": "hearthnet run", "kind": "run", **mem_of([node.proc.pid])}]
    sup = [c for c in psutil.Process(node.proc.pid).children() if "supervisord" in " ".join(c.cmdline())]
    for s in sup:
        rows.append({"name": "supervisord", "kind": "supervisord", **mem_of([s.pid])})
    for w in sorted(status["workers"], key=lambda w: w["name"]):
        if not w.get("pid"):
            continue
        program = w["program"]
        kind = "heavy" if program in ("embedding", "rag", "ui") else "light"
        rows.append({"name": w["name"], "kind": kind, **mem_of(family(w["pid"]))})
    return rows


def measure(settle: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hn-bench-") as tmp:
        node = Node(Path(tmp), "bench")
        node.init()
        try:
            node.start()
            status = node.wait_healthy(expected_programs(node), timeout=120)
            time.sleep(settle)  # let lazily started tasks and first heartbeats settle
            status = node.api("/api/v1/status")
            rows = node_processes(node, status)
        finally:
            node.cleanup()
    return {"processes": rows}


def expected_programs(node: Node) -> tuple[str, ...]:
    """Every program this node runs (embedding only where its model can run)."""
    status = node.api("/api/v1/status")
    running = {w["program"] for w in status["workers"]}
    return tuple(sorted(set(ALL_PROGRAMS) | running))


def summarise(rows: list[dict[str, Any]], raw: dict[str, float]) -> dict[str, Any]:
    total = round(sum(r["pss_mib"] for r in rows), 1)
    no_emb = round(sum(r["pss_mib"] for r in rows if not r["name"].startswith("embedding")), 1)
    light_over = [r["name"] for r in rows if r["kind"] == "light" and r["uss_mib"] > LIGHT_TARGET_MIB]
    return {"total_pss_mib": total, "total_pss_without_embedding_mib": no_emb,
            "process_count": len(rows), "light_over_target": light_over,
            "raw_worker_floor": raw,
            "targets": {"total_pss_mib": TOTAL_TARGET_MIB, "light_uss_mib": LIGHT_TARGET_MIB},
            "total_ok": no_emb <= TOTAL_TARGET_MIB, "light_ok": not light_over}


def render(rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    raw = summary["raw_worker_floor"]
    table = Table(title="hearthnet run --no-ui, every service on, no LLM model (MiB)")
    for col in ("process", "kind", "PSS", "USS", "USS / raw floor"):
        table.add_column(col, justify="left" if col in ("process", "kind") else "right")
    for r in rows:
        over = r["kind"] == "light" and r["uss_mib"] > LIGHT_TARGET_MIB
        uss = f"[red]{r['uss_mib']}[/red]" if over else str(r["uss_mib"])
        table.add_row(r["name"], r["kind"], str(r["pss_mib"]), uss, f"{r['uss_mib'] / raw['uss_mib']:.2f}")
    table.add_row("raw floor (python + zmq + msgpack)", "baseline", str(raw["pss_mib"]), str(raw["uss_mib"]), "1.00")
    console = Console()
    console.print(table)
    console.print(f"total PSS {summary['total_pss_mib']} MiB over {summary['process_count']} processes; "
                  f"without the embedding model worker {summary['total_pss_without_embedding_mib']} MiB "
                  f"(target <= {TOTAL_TARGET_MIB:.0f}: {'ok' if summary['total_ok'] else 'OVER'}); "
                  f"light workers over {LIGHT_TARGET_MIB:.0f} MiB USS: "
                  f"{', '.join(summary['light_over_target']) or 'none'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settle", type=float, default=5.0, help="seconds to wait after healthy")
    ap.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = ap.parse_args()
    raw = raw_baseline(args.settle)
    rows = measure(args.settle)["processes"]
    summary = summarise(rows, raw)
    render(rows, summary)
    if args.json:
        print(json.dumps({"processes": rows, **summary}, indent=2))


if __name__ == "__main__":
    main()
