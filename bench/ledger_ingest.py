"""Ledger ingest: `EventLog.append_received` on a batch of pre-signed events from members,
vs the raw minimum (canonical JSON + Ed25519 verify + one executemany INSERT in one
transaction, same WAL + synchronous=FULL settings), alternating rounds, medians.

    .venv/bin/python bench/ledger_ingest.py [--events 10000] [--runs 3]

Target (X02): >= 5 000 events/s.
"""
from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from hearthnet.identity import keys
from hearthnet.identity.canonical import canonical_json
from hearthnet.ledger.events import build_admission, build_event
from hearthnet.ledger.store import SCHEMA, EventLog

MEMBERS = 8


def make_events(n: int) -> tuple[keys.KeyPair, list[dict[str, Any]]]:
    """The founder's genesis, invites + joins of MEMBERS nodes, then n posts by them."""
    root = keys.generate()
    with tempfile.TemporaryDirectory(prefix="hn-bench-") as tmp:
        log = EventLog(Path(tmp) / "src.sqlite", root.node_id_full)
        log.create_genesis(root, "Bench", None)
        members = [keys.generate() for _ in range(MEMBERS)]
        for kp in members:
            inv = log.append_local(root, "community.member.invited", {
                "invitee_node_id": kp.node_id_full, "display_name": "m", "initial_level": "member",
                "expires_at": "2099-01-01T00:00:00Z"})
            log.append_received([build_event(kp, root.node_id_full, log.clock + 1, "community.member.joined",
                                             {"invite_event_id": inv["event_id"], "node_manifest": {},
                                              "admission": build_admission(root, inv["event_id"], kp.node_id_full)})])
        head = log.head()
        posts = [build_event(members[i % MEMBERS], root.node_id_full, head + 1 + i, "market.post.created", {
            "client_id": f"c{i}", "category": "offer", "title": f"Item {i}", "body": "x" * 120,
            "location": {"lat": 51.5, "lng": 6.2, "label": "porch"}, "tags": ["tools"], "ttl_seconds": 3600})
            for i in range(n)]
        history = log.events()
        log.close()
    return root, history + posts


def ours(root: keys.KeyPair, events: list[dict[str, Any]]) -> float:
    with tempfile.TemporaryDirectory(prefix="hn-bench-") as tmp:
        log = EventLog(Path(tmp) / "events.sqlite", root.node_id_full)
        t0 = time.perf_counter()
        result = log.append_received(events)
        took = time.perf_counter() - t0
        assert result.accepted == len(events), result.rejected_reasons[:3]
        log.close()
    return len(events) / took


def raw(root: keys.KeyPair, events: list[dict[str, Any]]) -> float:
    with tempfile.TemporaryDirectory(prefix="hn-bench-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "events.sqlite", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
        t0 = time.perf_counter()
        rows = []
        for ev in events:
            body = {k: v for k, v in ev.items() if k != "signature"}
            assert keys.verify_payload_with_node_id(ev, ev["author"])
            rows.append((ev["event_id"], ev["community_id"], 1, ev["lamport"], ev["wall_clock"], ev["author"],
                         ev["event_type"], json.dumps(body["data"]), ev["signature"], "now"))
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("INSERT INTO clock VALUES (?, ?)", (root.node_id_full, len(rows)))
        conn.execute("COMMIT")
        took = time.perf_counter() - t0
        conn.close()
    return len(events) / took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    root, events = make_events(args.events)
    canonical_json(events[0])  # warm imports
    ours_rates, raw_rates = [], []
    for _ in range(args.runs):
        raw_rates.append(raw(root, events))
        ours_rates.append(ours(root, events))
    o, r = statistics.median(ours_rates), statistics.median(raw_rates)
    print(f"{len(events)} events in one batch, median of {args.runs} alternating rounds")
    print(f"  append_received : {o:8.0f} events/s  ({', '.join(f'{x:.0f}' for x in ours_rates)})")
    print(f"  raw verify+insert: {r:8.0f} events/s  ({', '.join(f'{x:.0f}' for x in raw_rates)})")
    print(f"  ratio raw/ours   : {r / o:.2f}x   target >= 5000 events/s: {'ok' if o >= 5000 else 'MISSED'}")


if __name__ == "__main__":
    main()
