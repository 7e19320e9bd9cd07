"""Marketplace benchmark: `market.list` and `market.search` p50 at 10 000 posts against raw
baselines over the same data, measured in the same run (alternating, one call each a round).

    .venv/bin/python bench/market.py [--posts 10000] [--rounds 400] [--node]

In process (always): synthetic posts (offers, requests, info, emergencies; titles and
bodies from a preparedness vocabulary; 10 % already fulfilled or expired) are folded
**straight into the view** (`MarketView.apply`, not through the ledger), and the service's
handlers are called as the worker calls them (input checks, view query, wire dicts):

1. `market.list` newest 50 active posts, one category, and `status=all limit=500`, vs the
   same queries on a SQLite table of the same posts (indexes on lamport and category,
   rows turned into dicts).
2. `market.search` semantic with a warm vector cache (an in-process `embed.text`
   stand-in: a fixed 384-dim unit vector per text, so only the search is timed; the
   cache holds every post), vs a numpy matrix-vector product + top-10 over the same
   vectors; and the cold first search, which embeds every post through the stand-in.
3. `market.search` by substring (no embedder) vs the same ranking in SQLite (`LIKE` per
   query word on title, body, category and tags; best 10).

`--node`: a real node too (throw-away XDG dirs, embedding off): the posts are signed
with the node's key and stored **through the ledger** (`community.log.ingest`, batches
of 2 000); the market worker follows them. `market.list` and a substring
`market.search` through the local API (HTTP on the unix socket, gateway, broker,
worker) vs the same SQLite query as above.
"""
from __future__ import annotations

import argparse
import functools
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hearthnet.bus.service import Request  # noqa: E402
from hearthnet.identity import keys  # noqa: E402
from hearthnet.identity.manifest import rfc3339  # noqa: E402
from hearthnet.ids import new_ulid  # noqa: E402
from hearthnet.services.market.service import MarketService, MarketSettings  # noqa: E402
from hearthnet.services.market.view import CREATED, EXPIRED  # noqa: E402

DIM = 384
MODEL = "bench-embed"
WORDS = ("water shelter flood pump generator radio battery torch blanket medicine siren route dyke school "
         "gym kitchen fuel candle bleach boil filter food freezer fridge warden neighbour evacuation "
         "bandage burn fever insulin charger phone mesh node map bridge river street cellar sandbag "
         "ladder tent stove bread formula nappies dog cat lift doctor nurse car bike trailer tools").split()
CATEGORIES = ("offer", "request", "info", "emergency")
QUERIES = ("generator for a fridge", "insulin", "sandbags near the river", "dry blankets", "radio batteries",
           "boil water filter", "lift to the school", "tent for tonight")
console = Console(width=150)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


@functools.lru_cache(maxsize=None)
def stand_in_vector(text: str) -> list[float]:
    """What the stand-in embed.text answers, made once per text: its cost is not the service's."""
    return text_vector(text).tolist()


def text_vector(text: str) -> np.ndarray:
    rng = np.random.default_rng(abs(hash(text)) % 2**32)
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


# ------------------------------------------------------------------ data


def make_events(n: int, authors: list[str], now: datetime, seed: int = 7) -> list[dict[str, Any]]:
    """n posts (created events) plus expiries for ~10 %; lamports 1..; unsigned (the view
    does not verify: the ledger did)."""
    rng = random.Random(seed)
    events, lamport = [], 0
    for i in range(n):
        lamport += 1
        words = rng.sample(WORDS, 12)
        created = now - timedelta(seconds=rng.randrange(3 * 86400))
        ev = {"event_id": new_ulid(), "lamport": lamport, "author": rng.choice(authors), "event_type": CREATED,
              "wall_clock": rfc3339(created),
              "data": {"client_id": f"c{i}", "category": rng.choice(CATEGORIES), "title": " ".join(words[:4]).title(),
                       "body": " ".join(words[4:]), "location": None, "tags": words[:2], "ttl_seconds": 7 * 86400,
                       "quantity": rng.randrange(1, 9)}}
        events.append(ev)
        if rng.random() < 0.1:
            lamport += 1
            events.append({"event_id": new_ulid(), "lamport": lamport, "author": ev["author"], "event_type": EXPIRED,
                           "wall_clock": rfc3339(now), "data": {"client_id": f"e{i}", "target_event_id": ev["event_id"],
                                                                "reason": rng.choice(("fulfilled", "withdrawn"))}})
    return events


def sqlite_table(service: MarketService) -> sqlite3.Connection:
    """The same posts in a plain table, as a service with a posts table would hold them."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE posts (event_id TEXT PRIMARY KEY, lamport INT, author TEXT, category TEXT, title TEXT, "
               "body TEXT, tags TEXT, quantity INT, created_at TEXT, expires_at TEXT, expiry_reason TEXT)")
    db.execute("CREATE INDEX by_lamport ON posts (lamport)")
    db.execute("CREATE INDEX by_category ON posts (category, lamport)")
    rows = [(p.event_id, p.lamport, p.author, p.category, p.title, p.body, json.dumps(p.tags), p.quantity,
             rfc3339(p.created_at), rfc3339(p.expires_at), p.expiry_reason) for p in service.view.newest_first()]
    db.executemany("INSERT INTO posts VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    db.row_factory = sqlite3.Row
    return db


def sql_list(db: sqlite3.Connection, now: str, category: str | None = None, status: str = "active",
             limit: int = 50) -> list[dict[str, Any]]:
    where = ["expiry_reason IS NULL AND expires_at > ?"] if status == "active" else ["1"]
    args: list[Any] = [now] if status == "active" else []
    if category:
        where.append("category = ?")
        args.append(category)
    sql = f"SELECT * FROM posts WHERE {' AND '.join(where)} ORDER BY lamport DESC, event_id DESC LIMIT ?"
    return [{**dict(r), "tags": json.loads(r["tags"])} for r in db.execute(sql, [*args, limit])]


def sql_like(db: sqlite3.Connection, now: str, query: str, k: int = 10) -> list[dict[str, Any]]:
    """The substring ranking of market.search in SQL: per query word 1 for the title, 0.6
    for body, category or tags (LIKE is case-insensitive for ASCII), best k."""
    words = query.lower().split()
    terms = " + ".join("(CASE WHEN title LIKE ? THEN 1.0 WHEN body LIKE ? OR category LIKE ? OR tags LIKE ? "
                       "THEN 0.6 ELSE 0 END)" for _ in words)
    args = [a for w in words for a in [f"%{w}%"] * 4]
    sql = (f"SELECT *, ({terms}) / {len(words)}.0 AS score FROM posts WHERE expiry_reason IS NULL AND expires_at > ? "
           "AND score > 0 ORDER BY score DESC, lamport DESC LIMIT ?")
    return [dict(r) for r in db.execute(sql, (*args, now, k))]


# ------------------------------------------------------------------ in process


class StandInBus:
    """embed.text in process: a fixed vector per text (no model), so a search times the
    service, not a model."""

    def __init__(self, embedding: bool) -> None:
        self.embedding = embedding

    async def admin(self, op: str, **_: Any) -> dict[str, Any]:
        caps = [{"name": "embed.text", "params": {"model": MODEL}, "providers": 1, "local": True}]
        return {"capabilities": caps if self.embedding else []}

    async def call(self, cap: str, version: str, body: Any, **_: Any) -> dict[str, Any]:
        assert cap == "embed.text" and self.embedding
        return {"output": {"embeddings": [stand_in_vector(t) for t in body["input"]["texts"]]}}


def service_with(events: list[dict[str, Any]], embedding: bool, cache: int) -> MarketService:
    me = keys.generate().node_id_full
    svc = MarketService(MarketSettings(embedding_model=MODEL, cache_entries=cache), StandInBus(embedding), me,
                        lambda _n: "member")
    asyncio.run(svc._rebuild(events))
    return svc


def alternate(rounds: int, ours: Callable[[int], Any], raw: Callable[[int], Any]) -> tuple[list[float], list[float]]:
    a, b = [], []
    for i in range(rounds):
        t0 = time.perf_counter()
        ours(i)
        a.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        raw(i)
        b.append((time.perf_counter() - t0) * 1000)
    return a, b


def row(table: Table, what: str, ours: list[float], raw: list[float], raw_name: str) -> None:
    p50, r50 = statistics.median(ours), statistics.median(raw)
    table.add_row(what, f"{p50:.3f}", f"{pct(ours, 99):.3f}", raw_name, f"{r50:.3f}", f"{p50 / r50:.2f}×")


def in_process(n: int, rounds: int) -> None:
    now = datetime.now(timezone.utc)
    authors = [keys.generate().node_id_full for _ in range(30)]
    events = make_events(n, authors, now)
    t0 = time.perf_counter()
    svc = service_with(events, embedding=True, cache=n)
    load_s = time.perf_counter() - t0
    db = sqlite_table(svc)
    stamp = rfc3339(now)
    loop = asyncio.new_event_loop()

    def call(cap: str, inp: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(svc, cap.split(".")[1])
        return loop.run_until_complete(handler(Request(cap, "1.0", {"params": {}, "input": inp}, caller=svc.node_id,
                                                       deadline=time.monotonic() + 10)))

    active = len(svc.view.active())
    console.print(f"{n} posts ({len(events)} events, {active} active) folded into the view in {load_s:.2f} s "
                  f"({len(events) / load_s:,.0f} events/s); in process, rounds {rounds}")
    table = Table("operation", "p50 ms", "p99 ms", "raw baseline", "raw p50 ms", "ratio")
    cats = CATEGORIES
    row(table, "market.list (active, newest 50)",
        *alternate(rounds, lambda i: call("market.list", {}), lambda i: sql_list(db, stamp)), "SQLite, indexed")
    row(table, "market.list (one category, 50)",
        *alternate(rounds, lambda i: call("market.list", {"category": cats[i % 4]}),
                   lambda i: sql_list(db, stamp, cats[i % 4])), "SQLite, indexed")
    row(table, "market.list (status all, 500)",
        *alternate(rounds, lambda i: call("market.list", {"status": "all", "limit": 500}),
                   lambda i: sql_list(db, stamp, status="all", limit=500)), "SQLite, indexed")

    t0 = time.perf_counter()
    first = call("market.search", {"query": "warm up"})
    cold_ms = (time.perf_counter() - t0) * 1000
    assert first["meta"]["search_mode"] == "semantic" and first["meta"]["not_embedded"] == 0, first["meta"]
    keys_ = [(MODEL, p.event_id, p.content) for p in svc.view.active()]
    matrix = np.stack([svc.cache.get(k) for k in keys_])
    qvecs = [text_vector(q) for q in QUERIES]

    def numpy_top(i: int) -> Any:
        scores = matrix @ qvecs[i % len(QUERIES)]
        top = np.argpartition(-scores, 9)[:10]
        return top[np.argsort(-scores[top])]

    row(table, "market.search semantic (cache warm, k 10)",
        *alternate(rounds, lambda i: call("market.search", {"query": QUERIES[i % len(QUERIES)]}), numpy_top),
        "numpy dot + top-10")
    svc.bus.embedding = False
    svc._model_choice = None
    row(table, "market.search substring (k 10)",
        *alternate(rounds, lambda i: call("market.search", {"query": QUERIES[i % len(QUERIES)]}),
                   lambda i: sql_like(db, stamp, QUERIES[i % len(QUERIES)])), "SQLite LIKE, same ranking")
    console.print(table)
    console.print(f"cold first semantic search (every active post embedded by the stand-in, batches of 256): "
                  f"{cold_ms:.0f} ms")
    loop.close()


# ------------------------------------------------------------------ through a node


def through_node(n: int, rounds: int) -> None:
    from hearthnet.ledger.events import build_event
    from hearthnet.testing.nodes import Node, key_of
    from hearthnet.testing.waiting import wait_for

    with tempfile.TemporaryDirectory(prefix="hn-bench-market-") as tmp:
        node = Node(Path(tmp), "bench")
        node.env["HEARTHNET_EMBEDDING_ENABLED"] = "false"
        try:
            node.init()
            node.start(wait_workers=("broker", "gateway", "ledger", "market"))
            kp = key_of(node)
            community = node.api("/api/v1/status")["community"]["community_id"]
            head = node.api("/bus/v1/call", "POST", {"params": {}, "input": {}},
                            headers={"X-HearthNet-Capability": "community.log.heads"})["output"]["head"]
            now = datetime.now(timezone.utc)
            raw = make_events(n, [kp.node_id_full], now)
            signed = []
            for ev in raw:
                signed.append(build_event(kp, community, head + ev["lamport"], ev["event_type"], ev["data"],
                                          now=datetime.fromisoformat(ev["wall_clock"].replace("Z", "+00:00")),
                                          event_id=ev["event_id"]))
            t0 = time.perf_counter()
            for i in range(0, len(signed), 2000):
                code, body = node.call("community.log.ingest", {"params": {}, "input": {"events": signed[i:i + 2000]}})
                assert code == 200 and body["output"]["rejected"] == 0, body
            last = [ev for ev in signed if ev["event_type"] == CREATED][-1]["event_id"]

            def caught_up() -> bool:
                code, body = node.call("market.list", {"params": {}, "input": {"status": "all", "limit": 1}})
                return code == 200 and [p["event_id"] for p in body["output"]["posts"]] == [last]

            wait_for(caught_up, 300, 0.2, message="the market worker caught up")
            console.print(f"--node: {len(signed)} events through the ledger and into the market worker in "
                          f"{time.perf_counter() - t0:.1f} s")
            svc = service_with(raw, embedding=False, cache=1)
            db, stamp = sqlite_table(svc), rfc3339(now)
            table = Table("operation (local API)", "p50 ms", "p99 ms", "raw baseline", "raw p50 ms", "ratio")
            body = {"params": {}, "input": {}}
            row(table, "market.list (active, newest 50)",
                *alternate(rounds, lambda i: node.call("market.list", body), lambda i: sql_list(db, stamp)),
                "SQLite, indexed")
            row(table, "market.search substring (k 10)",
                *alternate(rounds, lambda i: node.call("market.search", {"params": {}, "input": {
                    "query": QUERIES[i % len(QUERIES)]}}), lambda i: sql_like(db, stamp, QUERIES[i % len(QUERIES)])),
                "SQLite LIKE, same ranking")
            console.print(table)
        finally:
            node.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--posts", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=400)
    ap.add_argument("--node", action="store_true", help="also through a real node's local API (events via the ledger)")
    args = ap.parse_args()
    in_process(args.posts, args.rounds)
    if args.node:
        through_node(args.posts, max(50, args.rounds // 4))


if __name__ == "__main__":
    main()
