"""GET /api/v1/subscribe against a fake ledger subscription: the wire, heartbeats, the
bounded queue and receipts resolved through the ledger."""
from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from types import SimpleNamespace
from typing import Any, AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hearthnet.gateway import live
from hearthnet.identity import keys

ME, OTHER = keys.generate().node_id_full, keys.generate().node_id_full


def post(n: int, kind: str = "market.post.created", **data: Any) -> dict[str, Any]:
    return {"event_id": f"e{n}", "event_type": kind, "author": OTHER, "data": data, "lamport": n}


class FakeBus:
    """The ledger's seq subscription: `subscribed` at `start`, then what the test feeds."""

    def __init__(self, start: int = 5) -> None:
        self.start = start
        self.feed: asyncio.Queue = asyncio.Queue()
        self.inputs: list[dict[str, Any]] = []
        self.stored: dict[str, dict[str, Any]] = {}
        self.lookups = 0

    async def stream(self, cap: str, version: str, body: Any, **kw: Any) -> AsyncIterator[tuple[str, Any]]:
        assert cap == "community.log.subscribe" and kw.get("local_only")
        self.inputs.append(body["input"])
        yield "subscribed", {"seq": body["input"].get("after_seq", self.start)}
        while True:
            item = await self.feed.get()
            yield item

    async def call(self, cap: str, version: str, body: Any, **kw: Any) -> dict[str, Any]:
        self.lookups += 1
        found = [self.stored[i] for i in body["input"]["ids"] if i in self.stored]
        return {"output": {"events": found}}


async def serve(bus: FakeBus) -> TestClient:
    app = web.Application()
    live.install(app, SimpleNamespace(bus=bus, kp=SimpleNamespace(node_id_full=ME)))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def frames(resp: Any, n: int) -> list[dict[str, Any]]:
    """n SSE blocks (comments included) as dicts of their fields."""
    out, block = [], {}
    while len(out) < n:
        line = (await asyncio.wait_for(resp.content.readline(), 5)).decode().rstrip("\n")
        if line:
            name, _, value = line.partition(": ") if not line.startswith(":") else ("comment", "", line[2:])
            block[name] = value
        elif block:
            out.append(block)
            block = {}
    return out


def test_the_wire_subscribed_then_one_frame_per_event_with_topic_and_id() -> None:
    async def main() -> None:
        bus = FakeBus(start=5)
        client = await serve(bus)
        try:
            resp = await client.get("/api/v1/subscribe?topic=community.event&topic=marketplace.post.created")
            assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
            assert bus.inputs == [{"with_seq": True}]  # every type: community.event is asked for
            for n, ev in ((6, post(6)), (7, post(7, "community.member.joined"))):
                bus.feed.put_nowait(("event", {"seq": n, "event": ev}))
            hello, first, second = await frames(resp, 3)
            assert hello["retry"] == "2000" and hello["event"] == "subscribed" and hello["id"] == "5"
            assert json.loads(hello["data"]) == {"topics": ["community.event", "marketplace.post.created"],
                                                 "resume": "5"}
            assert (first["event"], first["id"], json.loads(first["data"])) == ("marketplace.post.created", "6", post(6))
            assert (second["event"], second["id"]) == ("community.event", "7")
            resp.close()
        finally:
            await client.close()

    asyncio.run(main())


def test_resume_token_header_wins_and_types_are_filtered_at_the_source() -> None:
    async def main() -> None:
        bus = FakeBus()
        client = await serve(bus)
        try:
            resp = await client.get("/api/v1/subscribe?topic=marketplace.post.expired&since=3",
                                    headers={"Last-Event-ID": "9"})
            (hello,) = await frames(resp, 1)
            assert hello["id"] == "9"
            assert bus.inputs == [{"with_seq": True, "after_seq": 9, "event_types": ["market.post.expired"]}]
            resp.close()
            resp = await client.get("/api/v1/subscribe?topic=marketplace.post.expired&since=3")
            assert (await frames(resp, 1))[0]["id"] == "3"
            resp.close()
        finally:
            await client.close()

    asyncio.run(main())


def test_silence_gets_keep_alive_comments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "HEARTBEAT_SECONDS", 0.05)

    async def main() -> None:
        client = await serve(FakeBus())
        try:
            resp = await client.get("/api/v1/subscribe?topic=community.event")
            hello, beat, beat2 = await frames(resp, 3)
            assert beat == {"comment": "keep-alive"} and beat2 == beat
            resp.close()
        finally:
            await client.close()

    asyncio.run(main())


def test_the_ledger_ending_the_subscription_ends_the_stream_with_an_error_frame() -> None:
    async def main() -> None:
        bus = FakeBus(start=5)
        client = await serve(bus)
        try:
            resp = await client.get("/api/v1/subscribe?topic=community.event")
            bus.feed.put_nowait(("event", {"seq": 6, "event": post(6)}))
            bus.feed.put_nowait(("error", {"error": "capacity_exceeded", "message": "fell behind"}))
            _, ev, end = await frames(resp, 3)
            assert ev["id"] == "6" and end["event"] == "error" and "id" not in end
            assert json.loads(end["data"]) == {"error": "capacity_exceeded", "message": "fell behind", "resume": "6"}
            assert await resp.content.read() == b""  # closed
        finally:
            await client.close()

    asyncio.run(main())


def test_a_client_that_falls_behind_holds_the_ledger_back_with_a_bounded_queue() -> None:
    async def main() -> None:
        bus = FakeBus()
        stream = live.LiveStream(SimpleNamespace(bus=bus), None, live.T.parse_topics(["community.event"]), 0,
                                 OrderedDict(), queue_size=3)
        for n in range(1, 10):  # nobody writes: the queue fills
            bus.feed.put_nowait(("event", {"seq": n, "event": post(n)}))
        frames_ = bus.stream("community.log.subscribe", "1.0", {"input": {}}, local_only=True)
        await frames_.__anext__()
        pump = asyncio.ensure_future(stream._pump(frames_))
        for _ in range(20):
            await asyncio.sleep(0)
        assert stream.queue.qsize() == 3 and not pump.done()
        assert bus.feed.qsize() == 5  # 3 queued, 1 waiting for room, the rest still with the ledger
        assert [stream.queue.get_nowait()[1] for _ in range(3)] == [1, 2, 3]  # the writer drains ...
        for _ in range(20):
            await asyncio.sleep(0)
        assert [stream.queue.get_nowait()[1] for _ in range(3)] == [4, 5, 6]  # ... and the pump goes on
        pump.cancel()

    asyncio.run(main())


def test_receipts_reach_the_sender_of_the_message_looked_up_once() -> None:
    async def main() -> None:
        bus = FakeBus()
        bus.stored["m1"] = dict(post(1, "chat.message.sent", recipient=OTHER), author=ME)
        client = await serve(bus)
        try:
            resp = await client.get(f"/api/v1/subscribe?topic=chat.receipt.{ME}")
            assert bus.inputs[0]["event_types"] == ["chat.message.delivered", "chat.message.read"]
            for n, target in ((2, "m1"), (3, "unknown"), (4, "m1")):
                kind = "chat.message.delivered" if n == 2 else "chat.message.read"
                bus.feed.put_nowait(("event", {"seq": n, "event": post(n, kind, target_event_id=target)}))
            _, a, b = await frames(resp, 3)
            assert (a["event"], a["id"], b["id"]) == (f"chat.receipt.{ME}", "2", "4")
            assert bus.lookups == 2  # m1 once (then cached), unknown once
            resp.close()
        finally:
            await client.close()

    asyncio.run(main())
