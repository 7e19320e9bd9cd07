"""The gossip hint: a round with every peer shortly after the log gains an event, and
after the ledger subscription is renewed (events stored while it was down)."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from hearthnet.gateway import mesh as M


class FakeBus:
    def __init__(self, scripts: list[list[tuple[str, Any]]]) -> None:
        self.scripts = scripts

    async def stream(self, cap: str, *a: Any, **kw: Any) -> AsyncIterator[tuple[str, Any]]:
        assert cap == "community.log.subscribe"
        frames = self.scripts.pop(0) if self.scripts else []
        for f in frames:
            yield f
        if not self.scripts:
            await asyncio.sleep(3600)


class FakeMembers:
    def on_change(self, cb: Any) -> None:
        pass


def test_a_renewed_subscription_and_each_new_event_trigger_a_round(monkeypatch) -> None:
    monkeypatch.setattr(M, "GOSSIP_DELAY_SECONDS", 0.01)
    monkeypatch.setattr(M, "WATCH_RETRY_SECONDS", 0.05)  # the first round is due before the renewal

    async def main() -> list[str]:
        rounds: list[str] = []
        # 1st subscription: one event, then the ledger goes away; 2nd: only `subscribed`.
        bus = FakeBus([[("subscribed", {}), ("event", {"event_id": "e1"})], [("subscribed", {})]])
        mesh = M.Mesh(bus, None, "c", "inproc://x", FakeMembers())
        mesh.peers = {"peer-b": {}}
        mesh._gossip_due = None
        mesh.sync_soon = rounds.append  # type: ignore[method-assign]
        task = asyncio.ensure_future(mesh._gossip())
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(rounds) >= 2 and not bus.scripts:
                break
        await asyncio.sleep(0.05)
        task.cancel()
        return rounds

    rounds = asyncio.run(main())
    # first subscription: `subscribed` + the event fall in one gossip window -> one round;
    # the renewed subscription -> another round
    assert rounds == ["peer-b", "peer-b"]
