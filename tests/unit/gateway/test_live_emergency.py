"""The local topic emergency.mode on /api/v1/subscribe: fed by the detector's
emergency.watch (local only), beside the ledger's events; matches no ledger event."""
from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

from hearthnet.gateway import topics as T
from tests.unit.gateway.test_live import FakeBus, frames, post, serve


class ModeBus(FakeBus):
    def __init__(self) -> None:
        super().__init__(start=5)
        self.modes: asyncio.Queue = asyncio.Queue()
        self.watch_kw: list[dict[str, Any]] = []

    async def stream(self, cap: str, version: str, body: Any, **kw: Any) -> AsyncIterator[tuple[str, Any]]:
        if cap != "emergency.watch":
            async for f in super().stream(cap, version, body, **kw):
                yield f
            return
        self.watch_kw.append(kw)
        while True:
            yield "state", await self.modes.get()


def test_topic_is_local_and_matches_no_ledger_event() -> None:
    (t,) = T.parse_topics(["emergency.mode"])
    assert t.local and T.event_types([t]) == []
    assert T.match([t], post(1)) is None
    assert T.match([t], {"event_type": "emergency.mode", "data": {}}) is None


def test_mode_frames_beside_ledger_events() -> None:
    async def main() -> None:
        bus = ModeBus()
        client = await serve(bus)
        try:
            resp = await client.get("/api/v1/subscribe?topic=emergency.mode&topic=marketplace.post.created")
            assert bus.inputs == [{"with_seq": True, "event_types": ["market.post.created"]}]
            bus.modes.put_nowait({"mode": "online", "since": "t0"})
            (hello, first) = await frames(resp, 2)
            assert hello["id"] == "5"
            assert first["event"] == "emergency.mode" and "id" not in first
            assert json.loads(first["data"]) == {"mode": "online", "online": True, "since": "t0"}
            bus.feed.put_nowait(("event", {"seq": 6, "event": post(6)}))
            bus.modes.put_nowait({"mode": "offline", "since": "t1"})
            got = await frames(resp, 2)
            assert {g["event"] for g in got} == {"marketplace.post.created", "emergency.mode"}
            mode = next(g for g in got if g["event"] == "emergency.mode")
            assert json.loads(mode["data"])["online"] is False
            assert bus.watch_kw[0]["local_only"] is True
            resp.close()
        finally:
            await client.close()

    asyncio.run(main())
