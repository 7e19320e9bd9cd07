"""Following the ledger from a worker (the pattern of the rag worker's auto-replication):
subscribe to `community.log.subscribe`; once it is live, read every stored event of the
wanted types (`community.log.events`, page by page), so nothing stored while we were
away or re-subscribing is missed; then take the live events. A subscription that breaks
(ledger restart, a subscriber that fell behind) is renewed, with a fresh catch-up.

`on_catch_up(events)` gets the complete stored list at each (re)subscription: a view is
rebuilt from it (which also drops events a revocation purged), and `on_event(ev)` gets
every live one after it.

`FollowedView` is that pattern for a service whose state is one such view (the market
board, the alerts): rebuilt at each catch-up and after a revocation, patched by each live
event, and `_wait_ready()` for calls that arrive before the first catch-up.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Awaitable, Callable, Sequence

from hearthnet.errors import HearthNetError

log = logging.getLogger("hearthnet.follow")

REVOKED = "community.member.revoked"  # may purge stored events: views are rebuilt
CATCH_UP_PAGE = 1000
RENEW_SECONDS = 2.0
LEDGER_TIMEOUT_SECONDS = 10.0


class LogFollower:
    def __init__(self, bus: Any, node_id: str, event_types: Sequence[str],
                 on_catch_up: Callable[[list[dict[str, Any]]], Awaitable[None]],
                 on_event: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self.bus = bus
        self.node_id = node_id
        self.event_types = list(event_types)
        self.on_catch_up = on_catch_up
        self.on_event = on_event
        self.rounds = 0  # completed catch-ups

    async def ledger(self, cap: str, inp: dict[str, Any]) -> dict[str, Any]:
        out = await self.bus.call(cap, "1.0", {"params": {}, "input": inp}, caller=self.node_id,
                                  timeout=LEDGER_TIMEOUT_SECONDS, node=self.node_id)
        return out.get("output") or {}

    async def run(self) -> None:
        while True:
            try:
                await self._one_subscription()
            except HearthNetError as exc:
                log.info("event subscription ended; renewing", extra={"code": exc.code, "reason": exc.message})
            except Exception:  # noqa: BLE001 - a bug with one event must not stop the view for good
                log.exception("following the event log failed; renewing")
            await asyncio.sleep(RENEW_SECONDS)

    async def _one_subscription(self) -> None:
        frames = self.bus.stream("community.log.subscribe", "1.0",
                                 {"params": {}, "input": {"event_types": self.event_types}},
                                 caller=self.node_id, node=self.node_id, timeout=10 ** 7)
        async with contextlib.aclosing(frames):
            async for event, data in frames:
                if event == "subscribed":
                    await self.on_catch_up(await self.stored())
                    self.rounds += 1
                elif event == "event" and isinstance(data, dict):
                    await self.on_event(data)
                elif event == "error":
                    raise HearthNetError.from_wire(data if isinstance(data, dict) else {})
                elif event == "done":
                    return

    async def stored(self) -> list[dict[str, Any]]:
        """Every stored event of our types, in log order. Several events can share a
        lamport value, so a page starts again at its last one's value (repeats dropped);
        only a page holding nothing but one value moves past it."""
        since, seen, out = 0, set(), []
        while True:
            page = [ev for ev in (await self.ledger("community.log.events", {
                "event_types": self.event_types, "since_lamport": since, "limit": CATCH_UP_PAGE})).get("events") or []
                if isinstance(ev, dict)]
            for ev in page:
                if ev.get("event_id") not in seen:
                    seen.add(ev.get("event_id"))
                    out.append(ev)
            last = page[-1].get("lamport") if page else None
            if len(page) < CATCH_UP_PAGE or not isinstance(last, int):
                return out
            since = last - 1 if last - 1 > since else last


class FollowedView:
    """Mixin: the service keeps `self.view` (anything with `apply(event)`), `self.ready`
    (an asyncio.Event) and `self.follower` (a LogFollower built with `self._rebuild` and
    `self._on_event`, its types including REVOKED); it says how to make an empty view
    and what to call itself when it is not ready yet."""

    READY_WAIT_SECONDS = 5.0
    NOT_READY = "this service has not read the event log yet"
    view: Any
    ready: asyncio.Event
    follower: LogFollower

    def _fresh_view(self) -> Any:
        raise NotImplementedError

    def _rebuilt(self, fresh: Any) -> None:
        """Called with a rebuilt view before it replaces the current one."""

    async def _rebuild(self, events: list[dict[str, Any]]) -> None:
        """A fresh view from the whole stored set (a revocation may have purged events)."""
        fresh = self._fresh_view()
        for ev in events:
            fresh.apply(ev)
        self._rebuilt(fresh)
        self.view = fresh
        self.ready.set()

    async def _on_event(self, ev: dict[str, Any]) -> None:
        if ev.get("event_type") == REVOKED:
            await self._rebuild(await self.follower.stored())
        else:
            self.view.apply(ev)

    async def _wait_ready(self) -> None:
        if self.ready.is_set():
            return
        try:
            await asyncio.wait_for(self.ready.wait(), self.READY_WAIT_SECONDS)
        except asyncio.TimeoutError:
            raise HearthNetError("partition", f"{self.NOT_READY}; is the ledger running? try again shortly") from None
