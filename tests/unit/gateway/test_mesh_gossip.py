"""The gossip hint: a round with every peer as soon as the log gains an event after a
quiet spell, at most one round per window for a burst, and a round after the ledger
subscription is renewed (events stored while it was down)."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from hearthnet.gateway import mesh as M


class FakeBus:
    """Each stream() plays the next script, then (the last one) stays open."""

    def __init__(self, scripts: list[list[tuple[str, Any]]]) -> None:
        self.scripts = scripts
        self.feed: asyncio.Queue = asyncio.Queue()

    async def stream(self, cap: str, *a: Any, **kw: Any) -> AsyncIterator[tuple[str, Any]]:
        assert cap == "community.log.subscribe"
        for f in self.scripts.pop(0):
            yield f
        if not self.scripts:
            while True:
                yield await self.feed.get()


class FakeMembers:
    def on_change(self, cb: Any) -> None:
        pass


def mesh_with(bus: FakeBus, rounds: list[str]) -> M.Mesh:
    mesh = M.Mesh(bus, None, "c", "inproc://x", FakeMembers())
    mesh.peers = {"peer-b": {}}
    mesh.sync_soon = rounds.append  # type: ignore[method-assign]
    return mesh


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_lone_event_goes_at_once_and_a_burst_waits_for_the_window(monkeypatch) -> None:
    monkeypatch.setattr(M, "GOSSIP_DELAY_SECONDS", 0.2)

    async def main() -> None:
        rounds: list[str] = []
        bus = FakeBus([[]])
        task = asyncio.ensure_future(mesh_with(bus, rounds)._gossip())
        await settle()
        bus.feed.put_nowait(("event", {"event_id": "e1"}))
        await settle()
        assert rounds == ["peer-b"]  # no delay: a relay hop does not wait
        for n in (2, 3, 4):
            bus.feed.put_nowait(("event", {"event_id": f"e{n}"}))
        await settle()
        assert rounds == ["peer-b"]  # the burst waits for the window ...
        await asyncio.sleep(0.3)
        assert rounds == ["peer-b", "peer-b"]  # ... and goes in one round
        task.cancel()

    asyncio.run(main())


def test_a_renewed_subscription_triggers_a_round(monkeypatch) -> None:
    monkeypatch.setattr(M, "GOSSIP_DELAY_SECONDS", 0.0)
    monkeypatch.setattr(M, "WATCH_RETRY_SECONDS", 0.01)

    async def main() -> None:
        rounds: list[str] = []
        # The ledger ends the first subscription; the second only says `subscribed`.
        bus = FakeBus([[], [("subscribed", {})]])
        task = asyncio.ensure_future(mesh_with(bus, rounds)._gossip())
        await asyncio.sleep(0.1)
        assert rounds == ["peer-b"]
        task.cancel()

    asyncio.run(main())
