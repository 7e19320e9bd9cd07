"""Discovery time of N real nodes on a private LAN of network namespaces, vs bare multicast.

    sudo .venv/bin/python bench/discovery_time.py [--nodes 10] [--rounds 3] [--prefix hnbench]

Needs root: it builds hearthnet.testing.netns.MeshLab (N namespaces on one bridge in its own
namespace; no packet leaves them) and removes it at the end, also on Ctrl-C.
Setup (not timed): node 1 founds a community, nodes 2..N join by invite (`hearthnet id`,
`invite create`, `invite redeem`). Then, alternating for --rounds rounds:

- raw: N bare processes (bench/raw_multicast.py), one per namespace, same group and port,
  each announcing itself once and answering every newcomer at once; time from launching
  them until every one has heard all the others.
- hearthnet: the N nodes (`hearthnet run --no-ui`, UDP + mDNS on veth0, peer caches emptied
  before each round so nothing is found from the cache), time from launching them until
  every node lists the N-1 others in `community.peers.list` (polled every 0.1 s); and the
  same measured from the moment the last node's discovery worker started announcing
  (node start-up on a 2-core machine is most of the first figure).

Prints medians (absolute) and hearthnet / raw ratios. Target: <= 10 s for 10 nodes.
"""
from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from hearthnet.testing.netns import (
    LabError,
    MeshLab,
    forget_peers,
    form_community,
    invite_commands_missing,
    lists_peers,
    unavailable_reason,
    wait_mesh,
)

HERE = Path(__file__).resolve().parent
TIMEOUT = 120.0


def raw_round(lab: MeshLab) -> dict[str, float]:
    lab.stop_nodes()  # idle machine, free group: the same conditions the nodes get
    procs = {k: lab.run(k, [lab.python, str(HERE / "raw_multicast.py"), "--id", str(k), "--nodes", str(lab.n),
                            "--iface-ip", lab.addr(k), "--timeout", str(TIMEOUT)],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for k in lab.ks}
    t0 = time.monotonic()
    reports = {}
    try:
        for k, p in procs.items():
            assert p.stdout is not None
            line = p.stdout.readline()
            if not line:
                raise LabError(f"raw participant {k} never heard everyone")
            reports[k] = json.loads(line)
    finally:
        for p in procs.values():
            if p.stdin is not None:
                p.stdin.close()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stdout is not None:
                p.stdout.close()
    done = max(r["done"] for r in reports.values())
    return {"from_launch": done - t0, "from_last_ready": done - max(r["ready"] for r in reports.values())}


def node_round(lab: MeshLab, ids: dict[int, str]) -> dict[str, float]:
    lab.stop_nodes()
    for k in lab.ks:
        forget_peers(lab.node(k))
    t0 = lab.launch_all()
    state = wait_mesh(lab.nodes, lists_peers(ids), TIMEOUT)
    late = [k for k, d in state.items() if d.done_at is None]
    if late:
        raise LabError(f"nodes {late} did not find all others within {TIMEOUT:g} s: "
                       f"{ {k: state[k].diagnose for k in late} }")
    done = max(d.done_at for d in state.values() if d.done_at is not None)
    ups = [d.discovery_up_at for d in state.values() if d.discovery_up_at is not None]
    return {"from_launch": done - t0, "from_last_ready": done - max(ups) if len(ups) == lab.n else float("nan")}


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prefix", default="hnbench")
    args = ap.parse_args()
    if (reason := unavailable_reason()):
        print(f"discovery_time: {reason}", file=sys.stderr)
        return 3
    if (missing := invite_commands_missing()):
        print(f"discovery_time: blocked: this install lacks {', '.join(missing)}", file=sys.stderr)
        return 3
    signal.signal(signal.SIGTERM, _interrupt)
    raw: list[dict[str, float]] = []
    ours: list[dict[str, float]] = []
    with MeshLab(args.nodes, args.prefix) as lab:
        t = time.monotonic()
        ids = form_community(lab)
        print(f"{args.nodes} nodes joined into one community in {time.monotonic() - t:.1f} s", flush=True)
        for i in range(args.rounds):
            raw.append(raw_round(lab))
            ours.append(node_round(lab, ids))
            print(f"round {i + 1}: raw {raw[-1]['from_launch']:.3f} s, hearthnet {ours[-1]['from_launch']:.2f} s "
                  f"from launch ({ours[-1]['from_last_ready']:.2f} s after the last discovery worker started)",
                  flush=True)

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    r_l, o_l = med(raw, "from_launch"), med(ours, "from_launch")
    r_r, o_r = med(raw, "from_last_ready"), med(ours, "from_last_ready")
    print(json.dumps({"nodes": args.nodes, "rounds": args.rounds,
                      "raw_s": {"from_launch": round(r_l, 4), "from_last_ready": round(r_r, 4)},
                      "hearthnet_s": {"from_launch": round(o_l, 3), "from_last_ready": round(o_r, 3)},
                      "runs": {"raw": raw, "hearthnet": ours}}, indent=1))
    print(f"\n{args.nodes} nodes, median of {args.rounds} alternating rounds:")
    print(f"  hearthnet: {o_l:.2f} s from launch to full discovery; {o_r:.2f} s after the last discovery "
          f"worker started")
    print(f"  raw multicast: {r_l * 1000:.0f} ms from launch; {r_r * 1000:.1f} ms after the last socket joined")
    print(f"  ratio hearthnet/raw: {o_l / r_l:.0f}x from launch, {o_r / r_r:.0f}x after ready   "
          f"target <= 10 s: {'ok' if o_l <= 10 else 'MISSED'} from launch, "
          f"{'ok' if o_r <= 10 else 'MISSED'} after ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
