"""Offline, the sync loop runs every 30 s instead of 300 s; a mode change applies at once,
and the mode comes from the detector's `emergency.watch` (follow_mode)."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from hearthnet.emergency.effects import sync_interval
from hearthnet.emergency.follow import follow_mode
from hearthnet.gateway import mesh as M


class FakeMembers:
    def on_change(self, cb: Any) -> None:
        pass


def test_the_offline_interval_is_thirty_seconds() -> None:
    assert sync_interval("offline") == 30 and sync_interval("online") == 300
    assert sync_interval("degraded") == 300 and sync_interval(None) == 300


def test_sync_loop_follows_the_mode(monkeypatch) -> None:
    # Scaled: "300 s" = 100 s (never reached here), "30 s" = 0.05 s.
    monkeypatch.setattr(M, "sync_interval", lambda mode: 0.05 if mode == "offline" else 100.0)

    async def main() -> None:
        mesh = M.Mesh(None, None, "c", "inproc://x", FakeMembers())
        rounds: list[int] = []

        async def sync_all() -> list[Any]:
            rounds.append(1)
            return []

        mesh.sync_all = sync_all  # type: ignore[method-assign]
        task = asyncio.ensure_future(mesh._sync_loop())
        await asyncio.sleep(0.2)
        assert rounds == []  # online: the long interval
        mesh.set_mode("offline")
        await asyncio.sleep(0.3)
        assert len(rounds) >= 2
        assert mesh.sync_interval() == 0.05
        mesh.set_mode("online")
        await asyncio.sleep(0.06)
        n = len(rounds)
        await asyncio.sleep(0.2)
        assert len(rounds) == n  # restored
        task.cancel()

    asyncio.run(main())


class WatchBus:
    def __init__(self, frames: list[tuple[str, Any]]) -> None:
        self.frames = frames
        self.calls: list[dict[str, Any]] = []

    async def stream(self, cap: str, version: str, body: Any, **kw: Any) -> AsyncIterator[tuple[str, Any]]:
        assert cap == "emergency.watch"
        self.calls.append(kw)
        frames, self.frames = self.frames, []
        for f in frames:
            yield f
        await asyncio.sleep(3600)


def test_follow_mode_reports_each_change_once() -> None:
    async def main() -> None:
        bus = WatchBus([("state", {"mode": "online"}), ("state", {"mode": "degraded"}),
                        ("state", {"mode": "degraded"}), ("bogus", 1), ("state", {"mode": "offline"})])
        seen: list[Any] = []
        task = asyncio.ensure_future(follow_mode(bus, lambda mode, st: seen.append(mode)))
        await asyncio.sleep(0.05)
        task.cancel()
        assert seen == ["online", "degraded", "offline"]
        assert bus.calls[0]["local_only"] is True

    asyncio.run(main())
