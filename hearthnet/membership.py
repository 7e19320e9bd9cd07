"""This node's view of who is a current member, for the processes that let peers in
(discovery, the gateway's peer API, remote routing and sync).

The ledger worker is the authority (`community.members.get`); this keeps a copy that is
refreshed the moment a governance event is stored (`community.log.subscribe` filtered to
`community.*`), so a revocation takes effect in milliseconds, not after a cache period.
While the ledger cannot be asked (restarting, stopped) the last answer stands; before the
first answer nobody is a member — the boundary fails closed.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Awaitable, Callable

from hearthnet.errors import HearthNetError
from hearthnet.ledger.events import GOVERNANCE_TYPES

log = logging.getLogger("hearthnet.membership")

RESUBSCRIBE_SECONDS = 1.0
Listener = Callable[["Membership"], Awaitable[None]]


class Membership:
    def __init__(self, bus: Any, own_node_id: str, *, timeout: float = 5.0) -> None:
        self.bus = bus
        self.own_node_id = own_node_id
        self.timeout = timeout
        self.levels: dict[str, str] = {}  # current member -> anchor|trusted|member
        self.revoked: set[str] = set()
        self.loaded = False
        self.raw: dict[str, Any] = {"members": [], "revoked": []}
        self._listeners: list[Listener] = []
        self._task: asyncio.Task | None = None
        self._refreshing: asyncio.Lock = asyncio.Lock()

    # ---- queries ----------------------------------------------------------------------

    def is_member(self, node_id: str) -> bool:
        return node_id in self.levels and node_id not in self.revoked

    def level_of(self, node_id: str) -> str | None:
        return self.levels.get(node_id) if self.is_member(node_id) else None

    def why_not(self, node_id: str) -> str:
        """Plain words for a refused peer (for logs and `status`)."""
        if node_id in self.revoked:
            return "revoked from this community"
        if not self.loaded:
            return "membership unknown: the ledger has not answered yet"
        return "not a member of this community"

    # ---- lifecycle --------------------------------------------------------------------

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._follow())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def refresh(self) -> bool:
        """Ask the ledger now; True when the view changed."""
        async with self._refreshing:
            try:
                out = await self.bus.call("community.members.get", "1.0", {"params": {}, "input": {}},
                                          caller=self.own_node_id, timeout=self.timeout)
            except HearthNetError as exc:
                log.debug("membership not refreshed", extra={"reason": exc.message})
                return False
            return self._adopt(out.get("output") or {})

    def _adopt(self, out: dict[str, Any]) -> bool:
        levels = {m["node_id"]: str(m.get("level", "member")) for m in out.get("members", [])
                  if isinstance(m, dict) and isinstance(m.get("node_id"), str)}
        revoked = {r["node_id"] for r in out.get("revoked", [])
                   if isinstance(r, dict) and isinstance(r.get("node_id"), str)}
        changed = not self.loaded or levels != self.levels or revoked != self.revoked
        self.levels, self.revoked, self.raw, self.loaded = levels, revoked, out, True
        return changed

    async def _follow(self) -> None:
        """Refresh on every stored governance event, for as long as we run."""
        while True:
            frames = self.bus.stream("community.log.subscribe", "1.0",
                                     {"params": {}, "input": {"event_types": sorted(GOVERNANCE_TYPES)}},
                                     caller=self.own_node_id, timeout=365 * 86400)
            async with contextlib.aclosing(frames):
                async for event, _data in frames:
                    if event in ("subscribed", "event") and await self.refresh():
                        await self._notify()
            await asyncio.sleep(RESUBSCRIBE_SECONDS)

    async def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                await listener(self)
            except asyncio.CancelledError:
                raise
            except Exception:  # one listener's bug must not stop membership updates
                log.exception("membership listener failed")
