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
import sys
import time

from hearthnet.testing.pair_bench import LocalCalls, NodePair, poll, raw_round, report, round_stats

CORE = ("broker", "gateway", "ledger", "discovery", "governance", "alerts")


def on_b(b: LocalCalls, eid: str) -> bool:
    try:
        return bool(b.call("alert.list", {"event_id": eid})["alerts"])
    except RuntimeError:  # 404 not_found until B's alerts worker has it
        return False


def alert_round(a: LocalCalls, b: LocalCalls, b_id: str, n: int, rate: float) -> dict[str, list[float]]:
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--alerts", type=int, default=40, help="per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=float, default=4.0, help="alerts (and raw calls) per second, <= 8")
    args = ap.parse_args()
    if args.rate > 8:
        ap.error("--rate at most 8: each alert is one alert.deliver call, the peer limit is 10/s")
    res: dict[str, list[dict[str, float]]] = {"visible": [], "raw": []}
    pushed = 0
    with NodePair("hn-bench-alerts-", CORE) as pair:
        pair.wait_routes("alert.deliver")
        api_a, api_b = pair.local_calls()
        alert_round(api_a, api_b, pair.b_id, 5, args.rate)  # warm: TLS sessions, pins
        raw_round(api_a, 5, args.rate)
        for i in range(args.rounds):
            got = alert_round(api_a, api_b, pair.b_id, args.alerts, args.rate)
            pushed += int(got["pushed"][0])
            raw = raw_round(api_a, args.alerts, args.rate)
            for name, lat in (("visible", got["visible"]), ("raw", raw)):
                res[name].append(round_stats(lat))
            print(f"round {i + 1}: visible p50 {res['visible'][-1]['p50_ms']:.1f} ms, "
                  f"raw p50 {res['raw'][-1]['p50_ms']:.1f} ms", flush=True)
    report(f"alerts A -> B, medians of {args.rounds} rounds of {args.alerts} at {args.rate:g}/s",
           {"raw": "raw signed peer call (echo on B)", "visible": "alert.send -> in alert.list on B"},
           res, {"pushed": pushed, "alerts": args.alerts * args.rounds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
