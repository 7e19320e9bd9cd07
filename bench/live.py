"""Live updates: from `community.log.append` returning to the SSE frame arriving.

    .venv/bin/python bench/live.py [--events 100] [--interval 0.3] [--relay]

Starts two real nodes in throw-away XDG homes, joined by invite and peer-added over
loopback HTTPS (discovery multicast off), and three readers that see every append on A:

* raw: A's bare ledger subscription through the local API's generic stream path
  (POST /bus/v1/call community.log.subscribe as SSE) — the baseline;
* live A: GET /api/v1/subscribe?topic=marketplace.post.created on A (same node);
* live B: the same on B — the event reaches B by gossip (a sync round ~0.5 s after A's
  log gains it).

Each of `--events` appends (a market.post.created through A's local API, one every
`--interval` seconds) is timed from the append's HTTP reply to each reader's frame
(a frame that arrives before the reply counts as 0: the ledger publishes before it
answers), and from the append's request. Prints p50/p99 per reader, the
ratio live A / raw, the append round trip itself, and whether the issue's target holds:
SSE subscribers see events within a second of the append (p99 < 1 s on both nodes).
`--relay` adds node C, peered with B only: its subscriber gets each event after two
gossip hops (A → B → C).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hearthnet.discovery.cache import PEERS_FILE
from hearthnet.testing.live import Feed
from hearthnet.testing.nodes import Node, join_by_invite
from hearthnet.testing.waiting import wait_for

MESH = ("broker", "gateway", "ledger", "discovery")
TOPIC = "marketplace.post.created"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def post_body(n: int) -> dict[str, Any]:
    return {"params": {}, "input": {"event_type": "market.post.created", "data": {
        "client_id": f"bench{n}", "category": "offer", "title": f"Generator {n}", "body": "who needs power?",
        "location": None, "tags": ["power"], "ttl_seconds": 3600}}}


def start_nodes(root: Path, relay: bool) -> list[Node]:
    """A and B peered; with `relay`, C peered with B only (its peer cache forgets A)."""
    a, b = Node(root / "a", "alice"), Node(root / "b", "bob")
    nodes = [a, b] + ([Node(root / "c", "carol")] if relay else [])
    a.init()
    a.start(wait_workers=MESH)
    ids = {a.name: a.api("/api/v1/status")["node"]["node_id"]}
    for n in nodes[1:]:
        ids[n.name] = join_by_invite(a, n)
    if relay:
        (nodes[2].root / "data" / "hearthnet" / PEERS_FILE).unlink()
    links = [(a, b), (b, a)] + ([(b, nodes[2]), (nodes[2], b)] if relay else [])
    for n in nodes[1:]:
        n.start(wait_workers=MESH)
    for x, y in links:
        r = x.cli("peer", "add", f"127.0.0.1:{y.port}")
        assert r.returncode == 0, r.stderr
    for x, y in links:
        wait_for(lambda x=x, y=y: ids[y.name] in {p["node_id"] for p in x.api("/api/v1/status")["peers"]},
                 60, message=f"{x.name} sees {y.name}")
    return nodes


def until(feed: Feed, event_id: str, timeout: float = 30) -> float:
    """Arrival time of the frame carrying `event_id` (skipping control frames)."""
    while True:
        f = feed.next(timeout)
        if f.event_id == event_id:  # both streams carry the bare envelope
            return f.at


def measure(nodes: list[Node], events: int, interval: float) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """ms per reader from the append's reply (clamped at 0) and from its request."""
    a = nodes[0]
    feeds = {"raw": Feed(a, [], ledger_input={"event_types": ["market.post.created"]}),
             "live A": Feed(a, [TOPIC]), "live B": Feed(nodes[1], [TOPIC])}
    if len(nodes) > 2:
        feeds["live C"] = Feed(nodes[2], [TOPIC])
    for feed in feeds.values():
        assert feed.status == 200, feed.status
        feed.next()  # subscribed
    out: dict[str, list[float]] = {"append": [], **{k: [] for k in feeds}}
    sent: dict[str, list[float]] = {"append": out["append"], **{k: [] for k in feeds}}
    try:
        for n in range(events):
            t0 = time.perf_counter()
            status, body = a.call("community.log.append", post_body(n))
            t1 = time.perf_counter()
            assert status == 200, body
            eid = body["output"]["event"]["event_id"]
            out["append"].append((t1 - t0) * 1000)
            for name, feed in feeds.items():
                at = until(feed, eid)
                out[name].append(max(0.0, at - t1) * 1000)
                sent[name].append((at - t0) * 1000)
            time.sleep(max(0.0, interval - (time.perf_counter() - t0)))
    finally:
        for feed in feeds.values():
            feed.close()
    return out, sent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.3, help="seconds between appends")
    ap.add_argument("--relay", action="store_true", help="add node C, peered with B only (two gossip hops)")
    args = ap.parse_args()
    console = Console(width=132)
    with tempfile.TemporaryDirectory(prefix="hn-bench-live-") as tmp:
        nodes: list[Node] = []
        try:
            nodes = start_nodes(Path(tmp), args.relay)
            console.print(f"{len(nodes)} nodes up; {args.events} appends on A, one every {args.interval} s …")
            out, sent = measure(nodes, args.events, args.interval)
        finally:
            for n in nodes:
                n.cleanup()
    table = Table(title=f"live updates, {args.events} events")
    for col in ("path", "p50 ms", "p99 ms", "max ms", "from request p50", "p99"):
        table.add_column(col, justify="right" if col != "path" else "left")
    labels = {"append": "append round trip (local API)", "raw": "raw ledger stream on A (baseline)",
              "live A": "/api/v1/subscribe on A", "live B": "/api/v1/subscribe on B (gossip)",
              "live C": "/api/v1/subscribe on C (via B only)"}
    for key, label in labels.items():
        if key not in out:
            continue
        v = out[key]
        w = sent[key]
        table.add_row(label, f"{statistics.median(v):.2f}", f"{pct(v, 0.99):.2f}", f"{max(v):.2f}",
                      f"{statistics.median(w):.2f}", f"{pct(w, 0.99):.2f}")
    console.print(table)
    raw50, a50 = statistics.median(sent["raw"]), statistics.median(sent["live A"])
    console.print(f"from the append request, live A / raw p50: {a50:.2f} / {raw50:.2f} ms ({a50 / raw50:.2f}×); "
                  f"frames before the append's reply: raw {out['raw'].count(0.0)}, live A {out['live A'].count(0.0)} "
                  f"of {len(out['raw'])}")
    ok = pct(out["live A"], 0.99) < 1000 and pct(out["live B"], 0.99) < 1000
    console.print(f"within a second of the append (p99 < 1 s on A and its peer B): {'[green]yes' if ok else '[red]no'}")
    if "live C" in out:
        c_ok = pct(out["live C"], 0.99) < 1000
        console.print(f"on C, two hops away: {'[green]yes' if c_ok else '[yellow]no'} (p99 {pct(out['live C'], 0.99):.0f} ms)")
    sys.exit(0)


if __name__ == "__main__":
    main()
