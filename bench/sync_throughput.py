"""Events per second a node applies in one gossip sync round, vs raw verify + insert.

    .venv/bin/python bench/sync_throughput.py [--events 20000] [--rounds 3]

Two real nodes on this host (loopback, multicast discovery off, throw-away XDG homes):
A founds a community; B joins by invite (`hearthnet id` on B, `invite create` on A,
`invite redeem` on B) and is told where A is (`hearthnet peer add 127.0.0.1:<A>`). Then,
per round: both stop; --events new events authored by A (market posts of ~400 bytes) are
written straight into A's events.sqlite with the ledger library (hearthnet.ledger.store
EventLog, what A's ledger worker itself uses); A starts, then B. B finds A in its peer
cache and runs a sync round with it (heads, ids, then pulls of 2000 events, each verified
and stored by B's ledger; what B stores triggers follow-up rounds, which find nothing
new). Measured: that first round as B logs it (its gateway's "sync round" records:
received, ms, ok; a round cut short is reported, with the rate over the rounds that
brought the rest) and, in the same round of the benchmark, the raw minimum for the same events: bench/ledger_ingest.py's `raw` (canonical JSON + Ed25519
verify + one executemany INSERT, WAL, synchronous=FULL, one transaction), which has no
network, no batching, no broker.

Prints per-round and median figures and the ratio ours / raw.
Targets: >= 5 000 events/s and >= 0.5x raw.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ledger_ingest import raw  # noqa: E402

from hearthnet.identity import keys  # noqa: E402
from hearthnet.ledger.events import build_event  # noqa: E402
from hearthnet.ledger.store import EventLog  # noqa: E402
from hearthnet.testing.netns import invite_commands_missing  # noqa: E402
from hearthnet.testing.nodes import Node, join_by_invite  # noqa: E402
from hearthnet.testing.waiting import wait_for  # noqa: E402

CORE = ("broker", "gateway", "ledger", "discovery")
ROUND_TIMEOUT = 300.0


def community_dir(node: Node) -> Path:
    return next((node.root / "data" / "hearthnet" / "communities").glob("*/events.sqlite")).parent


def write_events(node: Node, n: int) -> tuple[keys.KeyPair, list[dict[str, Any]]]:
    """n market posts authored by the (stopped) node, straight into its event log."""
    kp = keys.load(node.root / "data" / "hearthnet" / "keys")
    path = community_dir(node) / "events.sqlite"
    log = EventLog(path, path.parent.name)
    try:
        head = log.clock
        events = [build_event(kp, log.community_id, head + 1 + i, "market.post.created", {
            "client_id": f"bench-{head + i}", "category": "offer", "title": f"Item {head + i}", "body": "x" * 120,
            "location": {"lat": 51.5, "lng": 6.2, "label": "porch"}, "tags": ["tools"], "ttl_seconds": 3600})
            for i in range(n)]
        result = log.append_received(events)
        if result.accepted != n:
            raise RuntimeError(f"A's log refused bench events: {result.rejected_reasons[:3]}")
    finally:
        log.close()
    return kp, events


def sync_rounds(node: Node, peer_id: str, since: float) -> list[dict[str, Any]]:
    """The node's sync rounds with `peer_id` that began after `since` (wall clock), oldest
    first, from its gateway's log (each round logs one "sync round" record)."""
    lines = node.api("/api/v1/logs?n=2000&component=gateway")["lines"]
    return [r for r in lines if r.get("msg") == "sync round" and r.get("peer") == peer_id
            and float(r.get("at") or 0) >= since]


def wait_rounds(b: Node, a_id: str, since: float, expect: int) -> list[dict[str, Any]]:
    """B's rounds with A from `since` until they have brought `expect` events (a new event
    in B's log triggers another round, so a round cut short is followed at once)."""
    def done() -> list[dict[str, Any]] | None:
        rounds = sync_rounds(b, a_id, since)
        return rounds if rounds and sum(int(r["received"]) for r in rounds) >= expect else None

    rounds: list[dict[str, Any]] = wait_for(
        done, ROUND_TIMEOUT, message=lambda: f"B's rounds with A bring {expect} events: {sync_rounds(b, a_id, since)}")
    return rounds


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if (missing := invite_commands_missing()):
        print(f"sync_throughput: blocked: this install lacks {', '.join(missing)}", file=sys.stderr)
        return 3
    tmp = tempfile.TemporaryDirectory(prefix="hn-bench-")
    a, b = Node(Path(tmp.name) / "a", "a"), Node(Path(tmp.name) / "b", "b")
    rounds: list[dict[str, float]] = []
    try:
        a.init()
        a.start(wait_workers=CORE)
        a_id = a.api("/api/v1/status")["node"]["node_id"]
        join_by_invite(a, b)
        b.start(wait_workers=CORE)
        r = b.cli("peer", "add", f"127.0.0.1:{a.port}")
        if r.returncode != 0:
            raise RuntimeError(f"peer add: {r.stderr or r.stdout}")
        wait_rounds(b, a_id, 0, 0)  # B and A in step before the first measured round
        for i in range(args.rounds):
            b.stop()
            a.stop()
            kp, events = write_events(a, args.events)
            raw_rate = raw(kp, events)
            a.start(wait_workers=CORE)
            since = time.time()
            b.start(wait_workers=CORE)
            got = wait_rounds(b, a_id, since, args.events)
            first = got[0]
            span = float(got[-1]["at"]) + float(got[-1]["ms"]) / 1000 - float(first["at"])
            total = sum(int(r["received"]) for r in got)
            rate = first["received"] / (first["ms"] / 1000)
            rounds.append({"events_per_s": rate, "raw_events_per_s": raw_rate, "round_ms": first["ms"],
                           "received": first["received"], "ok": first["ok"], "error": first["error"],
                           "rounds_needed": len([r for r in got if r["received"]]),
                           "all_events_per_s": total / span})
            print(f"round {i + 1}: B's first sync round applied {first['received']} events in "
                  f"{first['ms'] / 1000:.2f} s = {rate:.0f} events/s; raw verify+insert {raw_rate:.0f} events/s"
                  + ("" if first["ok"] else f"; that round FAILED ({first['error']}), "
                     f"{len(got) - 1} more brought the rest: {total / span:.0f} events/s overall"), flush=True)
    finally:
        a.cleanup()
        b.cleanup()
        tmp.cleanup()
    failed = [r for r in rounds if not r["ok"]]
    ours = statistics.median(r["events_per_s"] for r in rounds)
    base = statistics.median(r["raw_events_per_s"] for r in rounds)
    print(json.dumps({"events_per_round": args.events, "rounds": rounds,
                      "median_events_per_s": round(ours), "median_raw_events_per_s": round(base),
                      "ratio_ours_over_raw": round(ours / base, 2), "failed_rounds": len(failed)}, indent=1))
    print(f"\nsync round: {ours:.0f} events/s applied on the receiving node (median of {args.rounds} rounds of "
          f"{args.events}); raw verify+insert {base:.0f} events/s; ours/raw {ours / base:.2f}x   "
          f"targets >= 5000/s: {'ok' if ours >= 5000 else 'MISSED'}, >= 0.5x raw: "
          f"{'ok' if ours / base >= 0.5 else 'MISSED'}")
    if failed:
        print(f"{len(failed)} of {len(rounds)} rounds FAILED before applying every event "
              f"({failed[0]['error']}); the rates above are over what they applied until then")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
