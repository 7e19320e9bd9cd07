"""How a chat event reaches the other end (spec §2.2, issue 9 point 3).

Durable truth is the event log: every member's node stores every event and gossips it
(a sync round with every peer ~0.5 s after the log gains one), so a message reaches a
recipient who comes online next to ANY member that holds it, sender gone or not. That is
the store-and-forward, and it needs nothing here.

On top of it, `push` hands the signed event straight to the other node when that node is
a verified peer right now (`community.peers.list`): a targeted call of its `chat.deliver`
(the one chat capability peers may call), whose worker stores it through its own ledger
(full verification there). Accepted → `direct`; anything else (not listed, stopped, no
chat worker, refused) → `queued`, and gossip carries it. The same push carries the
`delivered` and `read` receipts back, so an online pair sees them in milliseconds rather
than after a gossip round.
"""
from __future__ import annotations

import logging
from typing import Any

from hearthnet.errors import HearthNetError

log = logging.getLogger("hearthnet.chat.delivery")

DIRECT = "direct"
QUEUED = "queued"
PUSH_TIMEOUT_SECONDS = 3.0  # a peer that is listed but gone answers "connection refused" at once on a LAN
PEERS_TIMEOUT_SECONDS = 2.0


class Delivery:
    def __init__(self, bus: Any, node_id: str) -> None:
        self.bus = bus
        self.node_id = node_id

    async def online_peers(self) -> set[str]:
        """Full ids of the peers discovery has verified (empty when it does not answer)."""
        try:
            out = await self.bus.call("community.peers.list", "1.0", {"params": {}, "input": {}},
                                      caller=self.node_id, node=self.node_id, timeout=PEERS_TIMEOUT_SECONDS)
        except HearthNetError as exc:
            log.info("peer list unavailable", extra={"code": exc.code})
            return set()
        peers = (out.get("output") or {}).get("peers") or []
        return {p["node_id_full"] for p in peers if isinstance(p, dict) and isinstance(p.get("node_id_full"), str)}

    async def push(self, event: dict[str, Any], to: str) -> str:
        """DIRECT if `to` is online and its node stored `event` now, else QUEUED."""
        if to not in await self.online_peers():
            return QUEUED
        try:
            out = await self.bus.call("chat.deliver", "1.0", {"params": {}, "input": {"event": event}},
                                      caller=self.node_id, node=to, timeout=PUSH_TIMEOUT_SECONDS)
        except HearthNetError as exc:
            log.info("direct push failed; gossip will carry the event",
                     extra={"event_id": event.get("event_id"), "to": to, "code": exc.code})
            return QUEUED
        return DIRECT if (out.get("output") or {}).get("stored") is True else QUEUED
