"""Live updates through real nodes: GET /api/v1/subscribe (topics, resume with
Last-Event-ID, bad input, owner only), an event appended on one node reaching a
subscriber on its peer, and `hearthnet watch --json` across a node restart."""
from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
from typing import Any

import pytest

from hearthnet.discovery.cache import PEERS_FILE
from hearthnet.testing.live import Feed
from hearthnet.ledger.events import build_event
from hearthnet.testing.nodes import Node, join_by_invite, key_of
from hearthnet.testing.waiting import wait_for

pytestmark = pytest.mark.integration
CORE = ("broker", "gateway", "ledger")
MESH = CORE + ("discovery",)


def post_data(n: int) -> dict[str, Any]:
    return {"client_id": f"c{n}", "category": "offer", "title": f"Generator {n}", "body": "who needs power?",
            "location": None, "tags": ["power"], "ttl_seconds": 3600}


def append(node: Node, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    status, body = node.call("community.log.append", {"input": {"event_type": event_type, "data": data}})
    assert status == 200, body
    return body["output"]["event"]


def post(node: Node, n: int) -> dict[str, Any]:
    return append(node, "market.post.created", post_data(n))


def advert(node: Node, n: int) -> dict[str, Any]:
    return append(node, "file.cid.advertised", {"cid": "blake3:" + f"{n:02x}" * 32, "sizes_bytes": n})


@pytest.fixture
def node(make_node) -> Node:
    a = make_node("alice")
    a.init()
    a.start(wait_workers=CORE)
    return a


def test_each_event_reaches_the_topics_it_belongs_to(node: Node) -> None:
    market, everything = Feed(node, ["marketplace.post.created"]), Feed(node, ["community.event"])
    try:
        assert market.status == everything.status == 200
        hello = market.next()
        assert hello.event == "subscribed" and hello.data["topics"] == ["marketplace.post.created"]
        assert everything.next().event == "subscribed"
        p1, ad, p2 = post(node, 1), advert(node, 1), post(node, 2)
        got = market.take(2)
        assert [(f.event, f.data) for f in got] == [("marketplace.post.created", p1), ("marketplace.post.created", p2)]
        all3 = everything.take(3)
        assert [(f.event, f.event_id) for f in all3] == [("community.event", e["event_id"]) for e in (p1, ad, p2)]
        tokens = [int(f.id) for f in all3]
        assert tokens == sorted(tokens) and len(set(tokens)) == 3
        assert [f.id for f in got] == [all3[0].id, all3[2].id]  # one token per event, on every stream
    finally:
        market.close()
        everything.close()


def test_reconnecting_with_last_event_id_gives_exactly_the_missed_events(node: Node) -> None:
    feed = Feed(node, ["community.event"])
    first = post(node, 1)
    hello, got = feed.take(2)
    assert got.event_id == first["event_id"]
    feed.close()
    missed = [post(node, 2), advert(node, 3), post(node, 4)]
    again = Feed(node, ["community.event", "marketplace.post.created"], last_event_id=got.id)
    by_query = Feed(node, ["community.event"], since=got.id)
    try:
        hello = again.next()
        assert hello.event == "subscribed" and hello.id == got.id
        caught = again.take(3)
        assert [f.event_id for f in caught] == [e["event_id"] for e in missed]
        assert [f.event for f in caught] == ["marketplace.post.created", "community.event", "marketplace.post.created"]
        assert [f.event_id for f in by_query.take(4)[1:]] == [e["event_id"] for e in missed]
        live = post(node, 5)
        assert again.next().event_id == live["event_id"]  # then live, nothing twice
        assert by_query.next().event_id == live["event_id"]
    finally:
        again.close()
        by_query.close()


def test_a_replay_longer_than_the_gateway_queue_reaches_a_client_that_fell_behind(node: Node) -> None:
    """1 500 stored events (more than the gateway's queue of 1 000 and the socket's
    buffers) replayed with since=0 to a client that reads nothing for a while: the
    gateway holds the ledger back instead of dropping the client; every event comes once."""
    kp = key_of(node)
    cid = node.api("/api/v1/status")["community"]["community_id"]
    events = [build_event(kp, cid, 10 + n, "market.post.created", post_data(n)) for n in range(1500)]
    status, body = node.call("community.log.ingest", {"input": {"events": events}}, timeout=120)
    assert status == 200 and body["output"]["accepted"] == 1500, body
    feed = Feed(node, ["marketplace.post.created"], since="0", read_after=3.0)
    try:
        assert feed.next().event == "subscribed"
        got = feed.take(1500)
        assert [f.event_id for f in got] == [e["event_id"] for e in events]
        live = post(node, 2000)
        assert feed.next().event_id == live["event_id"]
    finally:
        feed.close()


def test_bad_input_is_bad_request_and_only_the_owner_may_subscribe(node: Node) -> None:
    for query in ("topic=marketplace.post", "topic=chat.message.bob", "", "topic=community.event&since=abc"):
        status, body = node.request(f"/api/v1/subscribe?{query}")
        assert status == 400 and json.loads(body)["error"] == "bad_request", (query, body)
    status, body = node.request("/api/v1/subscribe?topic=community.event",
                                headers={"Last-Event-ID": "-3"})
    assert status == 400 and json.loads(body)["error"] == "bad_request"
    status, body = node.request("/api/v1/subscribe?topic=community.event", auth=False)
    assert status == 401 and json.loads(body)["error"] == "unauthorized"
    status, body = node.request("/api/v1/subscribe?topic=community.event", headers={"Authorization": "Bearer nope"})
    assert status == 401
    status, body = node.request("/api/v1/subscribe?topic=community.event", peer=True)  # the peer port
    assert status == 404 and json.loads(body)["error"] == "not_found"


def test_an_event_appended_on_one_node_reaches_a_subscriber_on_its_peer(make_node) -> None:
    a, b = make_node("alice"), make_node("bob")
    a.init()
    a.start(wait_workers=MESH)
    b_id = join_by_invite(a, b)
    b.start(wait_workers=MESH)
    a_id = a.api("/api/v1/status")["node"]["node_id"]
    a.peer_add(b)
    b.peer_add(a)
    for n, other in ((a, b_id), (b, a_id)):
        wait_for(lambda n=n, other=other: other in n.peers(), 30, message=f"{n.name} sees its peer")
    on_b = Feed(b, ["marketplace.post.created", f"chat.message.{b_id}"])
    receipts_on_a = Feed(a, [f"chat.receipt.{a_id}"])
    try:
        on_b.next()
        receipts_on_a.next()
        p = post(a, 1)
        got = on_b.next(timeout=60)
        assert (got.event, got.data) == ("marketplace.post.created", p)
        msg = append(a, "chat.message.sent", {"client_id": "m1", "recipient": b_id, "body": "ok?", "attachments": []})
        got = on_b.next(timeout=60)
        assert (got.event, got.data) == (f"chat.message.{b_id}", msg)
        # bob's chat worker acknowledges the message by itself; the receipt reaches alice's topic
        got = receipts_on_a.next(timeout=60)
        assert got.event == f"chat.receipt.{a_id}" and got.data["event_type"] == "chat.message.delivered"
        assert got.data["author"] == b_id and got.data["data"]["target_event_id"] == msg["event_id"]
    finally:
        on_b.close()
        receipts_on_a.close()


def test_an_event_is_relayed_to_a_node_that_only_hears_the_middle_one(make_node) -> None:
    """A and C are not peers; B peers both. An event appended on A reaches C's
    subscriber through B's gossip (B re-gossips what it received)."""
    a, b, c = make_node("alice"), make_node("bob"), make_node("carol")
    a.init()
    a.start(wait_workers=MESH)
    b_id, c_id = join_by_invite(a, b), join_by_invite(a, c)
    (c.root / "data" / "hearthnet" / PEERS_FILE).unlink()  # redeeming left A in C's peer cache
    b.start(wait_workers=MESH)
    c.start(wait_workers=MESH)
    a_id = a.api("/api/v1/status")["node"]["node_id"]
    for x, y in ((a, b), (b, a), (b, c), (c, b)):
        x.peer_add(y)
    for n, want in ((a, {b_id}), (b, {a_id, c_id}), (c, {b_id})):
        wait_for(lambda n=n, want=want: n.peers() == want, 30, message=f"{n.name} sees {len(want)} peer(s)")
    on_c = Feed(c, ["marketplace.post.created"])
    try:
        on_c.next()
        p = post(a, 1)
        got = on_c.next(timeout=60)
        assert (got.event, got.data) == ("marketplace.post.created", p)
    finally:
        on_c.close()


class Watch:
    """`hearthnet watch --json` as a subprocess; its lines in queues."""

    def __init__(self, node: Node, *args: str) -> None:
        self.proc = subprocess.Popen([node.python, "-m", "hearthnet", "watch", "--json", *args], env=node.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: queue.Queue = queue.Queue()
        self.err: queue.Queue = queue.Queue()
        for stream, q in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=lambda s=stream, q=q: [q.put(line) for line in s], daemon=True).start()

    def line(self, timeout: float = 60) -> dict[str, Any]:
        return json.loads(self.out.get(timeout=timeout))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                return self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


def test_watch_json_prints_events_and_resumes_across_a_node_restart(node: Node) -> None:
    watch = Watch(node, "marketplace.post.created", "community.event", "--since", "0")
    try:
        genesis = [watch.line() for _ in range(3)]  # --since 0: the whole log first
        assert [g["event"]["event_type"] for g in genesis] == [
            "community.created", "community.member.invited", "community.member.joined"]
        assert set(genesis[0]) == {"topic", "id", "event"} and genesis[0]["topic"] == "community.event"
        p1 = post(node, 1)
        first = watch.line()
        assert (first["topic"], first["event"]) == ("marketplace.post.created", p1)
        node.stop()
        node.start(wait_workers=CORE)
        p2, ad = post(node, 100), advert(node, 101)
        second, third = watch.line(), watch.line()
        assert [second["event"]["event_id"], third["event"]["event_id"]] == [p2["event_id"], ad["event_id"]]
        assert (second["topic"], third["topic"]) == ("marketplace.post.created", "community.event")
        assert int(first["id"]) < int(second["id"]) < int(third["id"])
        notes: list[str] = []

        def noted() -> bool:  # stderr has its own pipe and reader thread: it may lag stdout
            while not watch.err.empty():
                notes.append(watch.err.get())
            return any("reconnecting" in n for n in notes) and any("reconnected" in n for n in notes)

        wait_for(noted, 10, message=lambda: f"watch notes the outage; notes: {notes}")
        assert watch.stop() == 0  # Ctrl-C
    finally:
        watch.stop()


def test_watch_without_a_node_exits_3(make_node) -> None:
    idle = make_node("idle")
    idle.init()
    r = idle.cli("watch", "community.event", timeout=30)
    assert r.returncode == 3, r.stderr
    assert "no node" in r.stderr.lower() or "not running" in r.stderr.lower()
