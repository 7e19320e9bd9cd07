"""Gossip simulation (no processes): rounds until one new event reaches every node, vs log2(N).

    .venv/bin/python bench/gossip_sim.py [--nodes 16,128,1000] [--seeds 10] [--segment 25] [--overlay 3]

The rule simulated is the gateway's (hearthnet/gateway/mesh.py, hearthnet/testing/gossip_sim.py):
a node whose log gained an event runs, within one gossip window (GOSSIP_DELAY_SECONDS),
a push-pull sync round with every member peer it knows. Peers: LAN segments of
--segment nodes that all see each other, plus --overlay unicast overlay peers a node
across segments. The "raw" row of each N is the textbook comparison measured in the
same run: push-pull anti-entropy at fan-out 1 over the same graphs (every node, every
round, one random peer). Prints rounds (min/median/max over --seeds), log2(N), the ratio
rounds / log2(N), sync exchanges per node, and the time at one window per round.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from hearthnet.gateway.mesh import GOSSIP_DELAY_SECONDS  # noqa: E402
from hearthnet.testing.gossip_sim import Spread, log2, simulate  # noqa: E402


def run(n: int, seeds: int, segment: int, overlay: int, fanout: int | None) -> list[Spread]:
    return [simulate(n, seed, segment=segment, overlay=overlay, fanout=fanout) for seed in range(seeds)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="16,128,1000")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--segment", type=int, default=25, help="nodes per LAN segment")
    ap.add_argument("--overlay", type=int, default=3, help="overlay peers a node adds across segments")
    args = ap.parse_args()
    table = Table(title=f"one event, {args.seeds} seeds; segments of {args.segment}, "
                        f"{args.overlay} overlay peers a node; window {GOSSIP_DELAY_SECONDS} s")
    for col in ("N", "rule", "rounds min/med/max", "log2 N", "rounds / log2 N", "exchanges / node",
                "time (windows)", "sim ms"):
        table.add_column(col, justify="right")
    for n in (int(x) for x in args.nodes.split(",")):
        for label, fanout in (("gateway (all peers)", None), ("raw: anti-entropy f=1", 1)):
            t0 = time.perf_counter()
            spreads = run(n, args.seeds, args.segment, args.overlay, fanout)
            ms = (time.perf_counter() - t0) * 1000 / len(spreads)
            assert all(s.reached == n for s in spreads), "did not converge"
            rounds = sorted(s.rounds for s in spreads)
            med = statistics.median(rounds)
            table.add_row(str(n), label, f"{rounds[0]}/{med:g}/{rounds[-1]}", f"{log2(n):.2f}",
                          f"{med / log2(n):.2f}", f"{statistics.median(s.exchanges for s in spreads) / n:.1f}",
                          f"{med * GOSSIP_DELAY_SECONDS:.1f} s", f"{ms:.1f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
