"""The gateway's side of the mesh: follow the discovery worker's peer events, keep one
remote provider per verified peer in the broker (peers.py), and run gossip sync rounds
with each peer every SYNC_INTERVAL_SECONDS (30 s while this node is offline), as soon as it is found, and shortly after
our log gains an event (so news spreads in seconds, not minutes; sync.py).

Only current members get in (issue 6): a peer the discovery worker reports is checked
against our own ledger's membership before it becomes a route or a sync partner, and a
membership change (a revocation, a join) re-checks every peer at once. One bad peer
(malformed manifest or sync reply) costs only that peer, never the watcher or the loop."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from hearthnet.emergency.effects import sync_interval
from hearthnet.emergency.follow import follow_mode
from hearthnet.gateway.peers import PeerProxies
from hearthnet.membership import Membership
from hearthnet.sync import Ledger, SyncResult, sync_with

log = logging.getLogger("hearthnet.gateway.mesh")
WATCH_RETRY_SECONDS = 2.0
GOSSIP_DELAY_SECONDS = 0.5  # at most one gossip round per peer this often (a burst goes in one)


class Mesh:
    def __init__(self, bus: Any, client: Any, community_id: str, workers_endpoint: str,
                 members: Membership) -> None:
        self.bus = bus
        self.client = client  # transport.client.PeerClient
        self.community_id = community_id
        self.members = members
        self.proxies = PeerProxies(workers_endpoint, client)
        self.peers: dict[str, dict[str, Any]] = {}  # verified peers that are current members
        self.offered: dict[str, tuple[str, dict[str, Any]]] = {}  # every peer discovery reported
        self.last_sync: dict[str, SyncResult] = {}
        self.last_ok: dict[str, float] = {}  # wall time of each peer's last successful round (metrics)
        self.ledger = Ledger(bus)
        self._tasks: list[asyncio.Task] = []
        self._syncing: dict[str, asyncio.Task] = {}
        self._again: set[str] = set()
        self._gossip_due: asyncio.TimerHandle | None = None
        self._last_gossip = float("-inf")  # loop time of the last gossip round
        self.mode: str | None = None  # this node's emergency mode (None: no detector)
        self._mode_changed = asyncio.Event()

    def start(self) -> None:
        self.members.on_change(self._membership_changed)
        self._tasks = [asyncio.ensure_future(self._watch()), asyncio.ensure_future(self._sync_loop()),
                       asyncio.ensure_future(self._gossip()), asyncio.ensure_future(follow_mode(self.bus, self.set_mode))]

    def set_mode(self, mode: str | None, state: Any = None) -> None:
        """Offline: the sync loop runs every 30 s instead of 300 s (README "Emergency detector")."""
        if mode != self.mode:
            self.mode = mode
            self._mode_changed.set()

    def sync_interval(self) -> float:
        return sync_interval(self.mode)

    async def close(self) -> None:
        for task in self._tasks + list(self._syncing.values()):
            task.cancel()
        await self.proxies.close()

    async def _watch(self) -> None:
        """Follow community.peers.watch for as long as we run (re-subscribing if the
        discovery worker restarts)."""
        while True:
            frames = self.bus.stream("community.peers.watch", "1.0", {"params": {}, "input": {}},
                                     timeout=365 * 86400)
            async with contextlib.aclosing(frames):
                async for event, data in frames:
                    if event == "peer" and isinstance(data, dict):
                        await self._offer(data.get("kind", ""), data.get("peer"))
                    elif event == "error":
                        log.debug("peer watch ended", extra={"reason": data.get("message")})
            await asyncio.sleep(WATCH_RETRY_SECONDS)

    async def _gossip(self) -> None:
        """A new event in our log (ours, or one a peer gave us) → a round with every
        peer soon; rounds between equal logs stop after one request (id digest). A
        renewed subscription (the ledger restarted) also gets a round: an event stored
        before we were subscribed again would otherwise wait for the 300 s loop."""
        while True:
            frames = self.bus.stream("community.log.subscribe", "1.0", {"params": {}, "input": {}},
                                     timeout=365 * 86400)
            async with contextlib.aclosing(frames):
                async for event, _data in frames:
                    if event in ("event", "subscribed") and self.peers:
                        self._schedule_gossip()
            await asyncio.sleep(WATCH_RETRY_SECONDS)

    def _schedule_gossip(self) -> None:
        """At most one gossip round per GOSSIP_DELAY_SECONDS: at once when the last one is
        that long ago (a lone event, or one a peer just gave us, travels on without
        waiting: each hop of a relay A → B → C used to add the full delay), else one
        round when the window ends, for the whole burst."""
        if self._gossip_due is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_gossip + GOSSIP_DELAY_SECONDS - loop.time()
        if wait <= 0:
            self._gossip_now()
        else:
            self._gossip_due = loop.call_later(wait, self._gossip_now)

    def _gossip_now(self) -> None:
        self._gossip_due = None
        self._last_gossip = asyncio.get_running_loop().time()
        for node in list(self.peers):
            self.sync_soon(node)

    async def _offer(self, kind: str, peer: Any) -> None:
        """A peer event from discovery; applied only if the peer is a member."""
        if not isinstance(peer, dict) or not isinstance(peer.get("node_id"), str):
            log.warning("malformed peer event from discovery dropped")
            return
        node = peer["node_id"]
        if kind == "removed":
            self.offered.pop(node, None)
            await self._apply("removed", peer)
            return
        self.offered[node] = (kind, peer)
        if self.members.is_member(node):
            await self._apply(kind, peer)
        else:
            log.warning("peer %s refused: %s", peer.get("node_id_short") or node, self.members.why_not(node))
            await self._apply("removed", peer)

    async def _membership_changed(self, members: Membership) -> None:
        """Drop every peer that is no longer a member (its routes go with it), and admit
        offered peers that have just become members."""
        for node, peer in list(self.peers.items()):
            if not members.is_member(node):
                log.warning("peer %s dropped: %s", peer.get("node_id_short") or node, members.why_not(node))
                await self._apply("removed", peer)
        for node, (kind, peer) in list(self.offered.items()):
            if node not in self.peers and members.is_member(node):
                await self._apply(kind, peer)

    async def _apply(self, kind: str, peer: dict[str, Any]) -> None:
        node = peer["node_id"]
        if kind == "removed":
            self.peers.pop(node, None)
            task = self._syncing.pop(node, None)
            if task is not None:
                task.cancel()
            await self._proxies_apply("removed", peer)
            return
        if not await self._proxies_apply(kind, peer):
            return
        new = node not in self.peers
        self.peers[node] = peer
        if new:
            self.sync_soon(node)

    async def _proxies_apply(self, kind: str, peer: dict[str, Any]) -> bool:
        """False for a peer record PeerProxies could not use (logged there, once)."""
        return bool(await self.proxies.apply(kind, peer))

    def sync_soon(self, node: str) -> None:
        """One round now; if one is already running, one more right after it (the news
        may have arrived after it compared the logs)."""
        if node in self._syncing and not self._syncing[node].done():
            self._again.add(node)
            return
        self._syncing[node] = asyncio.ensure_future(self._rounds(node))

    async def _rounds(self, node: str) -> None:
        while True:
            self._again.discard(node)
            if node not in self.peers:
                return
            await self.sync_one(node)
            if node not in self._again:
                return

    async def sync_one(self, node: str) -> SyncResult:
        peer = self.peers[node]
        if not self.members.is_member(node):  # revoked since: never push or pull again
            return SyncResult(peer=node, ok=False, error=f"unauthorized: {self.members.why_not(node)}")
        try:
            result = await sync_with(self.ledger, self.client, self.community_id, peer)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # A malformed reply costs this round with this peer, never the loop.
            log.warning("sync with %s failed on a malformed reply", node, extra={"reason": repr(exc)})
            result = SyncResult(peer=node, ok=False, error=f"bad_request: malformed reply ({exc!r})")
        self.last_sync[node] = result
        if result.ok:
            self.last_ok[node] = result.at
        log.info("sync round", extra=result.to_dict())
        return result

    async def sync_all(self) -> list[SyncResult]:
        return [await self.sync_one(node) for node in list(self.peers) if node in self.peers]

    async def _sync_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            # A mode change wakes the loop, so a shorter interval applies at once.
            due = last + self.sync_interval()
            self._mode_changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._mode_changed.wait(), max(0.0, due - loop.time()))
            if loop.time() < due:
                continue
            last = loop.time()
            try:
                await self.sync_all()
            except asyncio.CancelledError:
                raise
            except Exception:  # whatever one round did, the next one still runs
                log.exception("sync loop round failed")

    def status(self) -> list[dict[str, Any]]:
        out = []
        for node, peer in self.peers.items():
            last = self.last_sync.get(node)
            out.append({"node_id": node, "node_id_short": peer.get("node_id_short"),
                        "display_name": peer.get("display_name"), "source": peer.get("source"),
                        "endpoint": peer.get("endpoint"),
                        "capabilities": [c.get("name") for c in
                                         (peer.get("manifest") or {}).get("capabilities", [])
                                         if isinstance(c, dict)],
                        "last_sync": last.to_dict() if last else None})
        return out
