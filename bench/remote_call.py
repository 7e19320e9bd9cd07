"""A capability served by another node: remote call latency vs the same call made locally.

    .venv/bin/python bench/remote_call.py [--calls 120] [--rounds 3] [--rate 8] [--burst 1]

Two real nodes on this host (loopback, multicast discovery off, throw-away XDG homes):
A founds a community; B joins by invite (`hearthnet id` on B, `invite create` on A,
`invite redeem` on B) and alone runs the echo worker (`HEARTHNET_WORKERS_ECHO=true`); A is
told where B is (`hearthnet peer add 127.0.0.1:<B>`). Then, alternating round by round,
sequential calls of `experimental.echo` (150-byte input) over one keep-alive connection to
each node's local API (its unix socket):

- remote: on A, so A's broker routes it to its peer proxy for B: HTTPS (pinned certificate,
  signed request and signed reply) → B's gateway → B's broker → echo worker, and back;
- local (the baseline, same run): the same call on B's local API.

Calls are paced at --rate per second (default 8) on both sides: the peer API allows a peer
10 calls/s per capability (spec core-bus-transport §7) and answers 429 `rate_limited`
beyond, so an unpaced loop would measure refusals, not calls. With --burst N the calls go
N back to back, one burst every N/rate seconds (N <= 10 fits the limit's one-second
bucket): on an otherwise idle machine single paced calls pay for waking every process on
the path, calls in a burst find them awake. Prints p50/p99 of each, as
medians over the rounds, and the ratio remote / local; for reference also local calls
back to back (unpaced: a busy loop keeps the CPU and caches warm, so it is faster).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hearthnet.testing.netns import invite_commands_missing
from hearthnet.testing.nodes import Node, join_by_invite
from hearthnet.testing.waiting import wait_for
from hearthnet.unixhttp import UnixHTTPConnection

CORE = ("broker", "gateway", "ledger", "discovery")
BODY = json.dumps({"params": {}, "input": {"text": "x" * 150}}).encode()


class Caller:
    """Sequential calls over one keep-alive connection to a node's local API."""

    def __init__(self, node: Node) -> None:
        self.conn = UnixHTTPConnection(str(node.api_socket), timeout=30)
        self.headers = {"Authorization": f"Bearer {node.token()}", "Content-Type": "application/json",
                        "X-HearthNet-Capability": "experimental.echo"}

    def call(self) -> float:
        t0 = time.perf_counter()
        self.conn.request("POST", "/bus/v1/call", body=BODY, headers=self.headers)
        resp = self.conn.getresponse()
        data = resp.read()
        took = (time.perf_counter() - t0) * 1000
        if resp.status != 200:
            raise RuntimeError(f"echo call failed: {resp.status} {data[:300]!r}")
        return took

    def paced(self, n: int, rate: float, burst: int = 1) -> list[float]:
        """n calls, `burst` of them back to back, bursts spaced so the average is `rate`/s."""
        out: list[float] = []
        gap = burst / rate
        nxt = time.monotonic()
        while len(out) < n:
            nxt += gap
            out += [self.call() for _ in range(min(burst, n - len(out)))]
            time.sleep(max(0.0, nxt - time.monotonic()))
        return out

    def close(self) -> None:
        self.conn.close()


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


def wait_remote_echo(a: Node, b_id: str, timeout: float = 60) -> None:
    wait_for(lambda: any(c["name"] == "experimental.echo" and not c["local"]
                         for c in a.api("/api/v1/capabilities")["capabilities"]), timeout, 0.2,
             message=lambda: f"A offers B's experimental.echo (A's peers: {a.api('/api/v1/status').get('peers')})")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=120, help="per round and side")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=float, default=8.0, help="calls per second (the peer limit is 10)")
    ap.add_argument("--burst", type=int, default=1,
                    help="calls back to back per burst (<= 10, the peer limit's one-second bucket)")
    args = ap.parse_args()
    if not 1 <= args.burst <= 10 or args.rate > 10:
        ap.error("--burst must be 1..10 and --rate at most 10 (the peer API's limit per capability)")
    if (missing := invite_commands_missing()):
        print(f"remote_call: blocked: this install lacks {', '.join(missing)}", file=sys.stderr)
        return 3
    tmp = tempfile.TemporaryDirectory(prefix="hn-bench-")
    a, b = Node(Path(tmp.name) / "a", "a"), Node(Path(tmp.name) / "b", "b")
    b.env["HEARTHNET_WORKERS_ECHO"] = "true"
    results: dict[str, list[dict[str, float]]] = {"remote": [], "local": [], "local_unpaced": []}
    callers: list[Caller] = []
    try:
        a.init()
        a.start(wait_workers=CORE)
        join_by_invite(a, b)
        b.start(wait_workers=(*CORE, "echo"))
        b_id = b.api("/api/v1/status")["node"]["node_id"]
        r = a.cli("peer", "add", f"127.0.0.1:{b.port}")
        if r.returncode != 0:
            raise RuntimeError(f"peer add: {r.stderr or r.stdout}")
        wait_remote_echo(a, b_id)
        remote, local = Caller(a), Caller(b)
        callers += [remote, local]
        remote.paced(10, args.rate)  # warm: TLS session, pins, connections
        local.paced(10, args.rate)
        route = a.api("/api/v1/traces?n=1&capability=experimental.echo")["traces"][-1]["route"]
        if route != f"remote:{b_id}":
            raise RuntimeError(f"A's call did not go to B: route {route}")
        for i in range(args.rounds):
            for name, caller in (("remote", remote), ("local", local)):
                lat = caller.paced(args.calls, args.rate, args.burst)
                results[name].append({"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99)})
            lat = [local.call() for _ in range(args.calls)]  # for reference: back to back
            results["local_unpaced"].append({"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99)})
            print(f"round {i + 1}: remote p50 {results['remote'][-1]['p50_ms']:.2f} ms, "
                  f"local p50 {results['local'][-1]['p50_ms']:.2f} ms", flush=True)
    finally:
        for c in callers:
            c.close()
        a.cleanup()
        b.cleanup()
        tmp.cleanup()
    med = {name: {k: round(statistics.median(r[k] for r in runs), 3) for k in ("p50_ms", "p99_ms")}
           for name, runs in results.items()}
    ratio = med["remote"]["p50_ms"] / med["local"]["p50_ms"]
    print(json.dumps({"median_of_rounds": med, "ratio_remote_over_local_p50": round(ratio, 2),
                      "calls_per_round": args.calls, "rounds": args.rounds, "rate_per_s": args.rate,
                      "burst": args.burst,
                      "runs": results}, indent=1))
    print(f"\nremote call p50 {med['remote']['p50_ms']:.2f} ms (p99 {med['remote']['p99_ms']:.2f}) vs local on B "
          f"{med['local']['p50_ms']:.2f} ms (p99 {med['local']['p99_ms']:.2f}): {ratio:.1f}x; "
          f"medians of {args.rounds} alternating rounds of {args.calls} calls at {args.rate:g}/s "
          f"in bursts of {args.burst} "
          f"(local back to back, not paced: p50 {med['local_unpaced']['p50_ms']:.2f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
