"""Emergency alerts: time from `alert.send` on A to the alert in `alert.list` on B vs a raw
signed peer call, in the same run.

    .venv/bin/python bench/alerts.py [--alerts 40] [--rounds 3] [--rate 4]

Two real nodes on this host (loopback, multicast off, throw-away XDG homes): A founds a
community (anchor: it may issue alerts), B joins by invite, each is told where the other
is (`peer add`), B runs the echo worker. Alternating round by round:

- alert: `alert.send` (status Test) on A's local API (append to A's log, push to B's
  `alert.deliver` over HTTPS, B's ledger verifies and stores it, B's alerts worker sees
  the stored event), then B's local API is polled (`alert.list` with the event id) until
  the alert is there ("visible on B"). Times from just before the send; `pushed` counts
  the alerts B stored during the send itself.
- raw (baseline, same run): `experimental.echo` called on A and served by B: one signed
  HTTPS request and signed reply between the same two nodes, through both brokers.

Paced (--rate alerts a second; the peer API allows 10 calls a second per capability).
Prints p50/p99 of each as medians over rounds, and the ratio to the raw call.
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

from rich.console import Console
from rich.table import Table

from hearthnet.testing.nodes import Node, join_by_invite
from hearthnet.testing.waiting import wait_for
from hearthnet.unixhttp import UnixHTTPConnection

CORE = ("broker", "gateway", "ledger", "discovery", "governance", "alerts")
POLL_TIMEOUT_S = 30.0


class Api:
    """Calls over one keep-alive connection to a node's local API."""

    def __init__(self, node: Node) -> None:
        self.conn = UnixHTTPConnection(str(node.api_socket), timeout=30)
        self.token = node.token()

    def call(self, cap: str, inp: dict[str, Any]) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
                   "X-HearthNet-Capability": cap}
        self.conn.request("POST", "/bus/v1/call", body=json.dumps({"params": {}, "input": inp}).encode(),
                          headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{cap}: {resp.status} {data[:300]!r}")
        return json.loads(data)["output"]

    def close(self) -> None:
        self.conn.close()


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


def poll(fn: Any) -> Any:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
    raise RuntimeError("message or receipt never arrived")


def on_b(b: Api, eid: str) -> bool:
    try:
        return bool(b.call("alert.list", {"event_id": eid})["alerts"])
    except RuntimeError:  # 404 not_found until B's alerts worker has it
        return False


def alert_round(a: Api, b: Api, b_id: str, n: int, rate: float) -> dict[str, list[float]]:
    visible, pushed = [], 0
    gap, nxt = 1.0 / rate, time.monotonic()
    for i in range(n):
        nxt += gap
        t0 = time.perf_counter()
        out = a.call("alert.send", {"headline": f"bench alert {i}", "status": "Test", "expires_in_seconds": 600})
        pushed += b_id in out["pushed"]
        poll(lambda: on_b(b, out["event_id"]))
        visible.append((time.perf_counter() - t0) * 1000)
        time.sleep(max(0.0, nxt - time.monotonic()))
    return {"visible": visible, "pushed": [float(pushed)]}


def raw_round(a: Api, n: int, rate: float) -> list[float]:
    out, gap, nxt = [], 1.0 / rate, time.monotonic()
    for _ in range(n):
        nxt += gap
        t0 = time.perf_counter()
        a.call("experimental.echo", {"text": "x" * 150})
        out.append((time.perf_counter() - t0) * 1000)
        time.sleep(max(0.0, nxt - time.monotonic()))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--alerts", type=int, default=40, help="per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=float, default=4.0, help="alerts (and raw calls) per second, <= 8")
    args = ap.parse_args()
    if args.rate > 8:
        ap.error("--rate at most 8: each alert is one alert.deliver call, the peer limit is 10/s")
    tmp = tempfile.TemporaryDirectory(prefix="hn-bench-alerts-")
    a, b = Node(Path(tmp.name) / "a", "a"), Node(Path(tmp.name) / "b", "b")
    b.env["HEARTHNET_WORKERS_ECHO"] = "true"
    res: dict[str, list[dict[str, float]]] = {"visible": [], "raw": []}
    apis: list[Api] = []
    pushed = 0
    try:
        a.init()
        a.start(wait_workers=CORE)
        join_by_invite(a, b)
        b.start(wait_workers=(*CORE, "echo"))
        for x, y in ((a, b), (b, a)):
            r = x.cli("peer", "add", f"127.0.0.1:{y.port}")
            if r.returncode != 0:
                raise RuntimeError(f"peer add: {r.stderr or r.stdout}")
        b_id = b.api("/api/v1/status")["node"]["node_id"]

        def remote(node: Node, cap: str, other: str) -> bool:
            return any(c["name"] == cap and not c["local"] and c["node_id"] == other
                       for c in node.api("/api/v1/capabilities")["capabilities"])

        wait_for(lambda: remote(a, "alert.deliver", b_id) and remote(a, "experimental.echo", b_id), 90, 0.2,
                 message="A routes to B")
        api_a, api_b = Api(a), Api(b)
        apis += [api_a, api_b]
        alert_round(api_a, api_b, b_id, 5, args.rate)  # warm: TLS sessions, pins
        raw_round(api_a, 5, args.rate)
        for i in range(args.rounds):
            got = alert_round(api_a, api_b, b_id, args.alerts, args.rate)
            pushed += int(got["pushed"][0])
            raw = raw_round(api_a, args.alerts, args.rate)
            for name, lat in (("visible", got["visible"]), ("raw", raw)):
                res[name].append({"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99)})
            print(f"round {i + 1}: visible p50 {res['visible'][-1]['p50_ms']:.1f} ms, "
                  f"raw p50 {res['raw'][-1]['p50_ms']:.1f} ms", flush=True)
    finally:
        for api in apis:
            api.close()
        a.cleanup()
        b.cleanup()
        tmp.cleanup()
    med = {name: {k: round(statistics.median(r[k] for r in runs), 2) for k in ("p50_ms", "p99_ms")}
           for name, runs in res.items()}
    table = Table(title=f"alerts A -> B, medians of {args.rounds} rounds of {args.alerts} at {args.rate:g}/s")
    for col in ("path", "p50 ms", "p99 ms", "p50 / raw"):
        table.add_column(col)
    for name, label in (("raw", "raw signed peer call (echo on B)"), ("visible", "alert.send -> in alert.list on B")):
        table.add_row(label, f"{med[name]['p50_ms']:.1f}", f"{med[name]['p99_ms']:.1f}",
                      f"{med[name]['p50_ms'] / med['raw']['p50_ms']:.1f}x")
    Console().print(table)
    print(json.dumps({"median_of_rounds": med, "pushed": pushed, "alerts": args.alerts * args.rounds,
                      "runs": res}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
