"""The market worker follows the ledger: catch-up once the subscription is live, then
live events; a subscription that breaks is renewed with a fresh catch-up (so an event
stored meanwhile is not missed), and a revocation rebuilds the view from the log."""
from __future__ import annotations

import asyncio
from typing import Any

import hearthnet.services.follow as follow
from tests.unit.ledger.conftest import post_data


class StreamingBus:
    """community.log.subscribe as scripted rounds: each round yields `subscribed`, then
    its events, then ends with an error (a broken subscription) or blocks (live)."""

    def __init__(self, inner: Any, rounds: list[list[dict]], on_break: Any = None) -> None:
        self.inner, self.rounds, self.subscriptions, self.on_break = inner, rounds, 0, on_break

    async def call(self, *args: Any, **kw: Any) -> dict[str, Any]:
        return await self.inner.call(*args, **kw)

    async def admin(self, *args: Any, **kw: Any) -> dict[str, Any]:
        return await self.inner.admin(*args, **kw)

    async def stream(self, cap: str, version: str, body: Any, **kw: Any):
        assert cap == "community.log.subscribe" and "market.post.created" in body["input"]["event_types"]
        n, self.subscriptions = self.subscriptions, self.subscriptions + 1
        yield "subscribed", {}
        if n < len(self.rounds):
            for ev in self.rounds[n]:
                yield "event", ev
            if self.on_break is not None:
                self.on_break()
            yield "error", {"error": "capacity_exceeded", "message": "subscriber fell too far behind"}
        else:
            await asyncio.Event().wait()


def test_catch_up_live_events_and_renewal(community, market, monkeypatch):
    monkeypatch.setattr(follow, "RENEW_SECONDS", 0.01)
    log = community.log
    stored_before = log.append_local(community.root, "market.post.created", post_data(1))
    live = log.append_local(community.root, "market.post.created", post_data(2))
    missed: list[dict] = []
    svc = market.svc
    # stored while the subscription is broken: only the next catch-up can bring it
    bus = StreamingBus(market.bus, [[live]], lambda: missed.append(
        log.append_local(community.root, "market.post.created", post_data(3))))
    svc.bus = svc.follower.bus = bus
    svc.view.reset()

    async def run() -> None:
        task = asyncio.ensure_future(svc.follower.run())
        for _ in range(500):
            if bus.subscriptions >= 2 and svc.follower.rounds >= 2:
                break
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(run())
    assert {stored_before["event_id"], live["event_id"], missed[0]["event_id"]} <= \
        {p.event_id for p in svc.view.active()}
    assert svc.ready.is_set() and bus.subscriptions == 2


def test_a_revocation_rebuilds_the_view_from_the_log(community, market):
    post = market.post()
    ghost = {"event_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "lamport": 999, "author": market.node_id,
             "event_type": "market.post.created", "wall_clock": "2026-12-01T10:00:00Z", "data": post_data(9)}
    market.svc.view.apply(ghost)  # in the view, not in the log (as if a revocation purged it)
    market.svc._own.clear()
    assert market.svc.view.get(ghost["event_id"]) is not None
    asyncio.run(market.svc._on_event({"event_type": "community.member.revoked"}))
    assert market.svc.view.get(ghost["event_id"]) is None and market.svc.view.get(post["event_id"]) is not None
