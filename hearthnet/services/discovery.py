"""The discovery worker's service: runs hearthnet.discovery (mDNS, UDP multicast, the peer
cache and manual peers) and offers what it knows to the rest of the node via the broker:

- `community.peers.list@1.0`  → peers (how each was found), mechanism status, and plain-
  language reasons when there are none;
- `community.peers.watch@1.0` (stream) → ("peer", {kind, peer}) for every verified peer now,
  then every added / updated / removed event; the gateway turns these into remote
  providers and sync rounds;
- `community.peers.add@1.0`   → `hearthnet peer add HOST:PORT` (unicast fallback).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, AsyncIterator

from hearthnet.bus.client import BusClient
from hearthnet.config import Config
from hearthnet.discovery.cache import parse_host_port
from hearthnet.discovery.registry import PeerEvent, PeerRecord, PeerRegistry
from hearthnet.discovery.errors import DiscoveryError
from hearthnet.discovery.service import Discovery
from hearthnet.errors import HearthNetError
from hearthnet.identity import keys as idkeys
from hearthnet.membership import Membership
from hearthnet.bus.service import Capability, Request
from hearthnet.constants import RPC_DEFAULT_TIMEOUT_SECONDS
from hearthnet.transport import peer_http
from hearthnet.transport.pinning import PinStore

log = logging.getLogger("hearthnet.discovery.worker")
CAPS_REFRESH_SECONDS = 10.0
GATEWAY_WAIT_SECONDS = 30.0


def peer_doc(rec: PeerRecord) -> dict[str, Any]:
    """What the gateway needs to reach and announce a peer."""
    return {"node_id": rec.node_id_full, "node_id_short": rec.node_id_short,
            "display_name": rec.display_name, "profile": rec.profile, "source": rec.source,
            "endpoint": {"host": rec.host, "port": rec.port}, "manifest": rec.manifest,
            "tls_fingerprint": rec.tls_fingerprint}


class DiscoveryService:
    name = "discovery"

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.bus = BusClient(cfg.paths.broker_clients_endpoint)  # to learn our capability names
        self.kp = idkeys.load(cfg.identity.keys_dir)
        self.community_id = cfg.community.community_id or ""
        # Manifests are all this worker asks peers for: peer_http, not aiohttp's client
        # (README "Lean processes"); the pins are the node's, shared with the gateway.
        self.pins = PinStore(cfg.paths.tls_dir / "known_peers.json")
        self.registry = PeerRegistry(self.kp.node_id_full, self.community_id)
        self.members = Membership(self.bus, self.kp.node_id_full)
        self.caps: list[str] = []
        self.watchers: set[asyncio.Queue] = set()
        self.discovery = Discovery(
            cfg, self.kp, self.community_id, cfg.transport.port, cfg.node.display_name,
            cfg.node.profile, lambda: self.caps, self._fetch_manifest, self.registry,
            data_dir=cfg.paths.data_dir)
        self._caps_task: asyncio.Task | None = None
        self._start_task: asyncio.Task | None = None
        self._gateway_wait = True  # until our gateway listens, discovery has not started

    async def _fetch_manifest(self, host: str, port: int) -> dict[str, Any]:
        """A verified manifest of a current member. The community id is public (it is in
        every announcement), so naming it proves nothing: the node must be a member in
        our own ledger. Foreign nodes pass through here so discovery can say who they are."""
        manifest, _fp = await peer_http.get_manifest(self.pins, host, port, timeout=RPC_DEFAULT_TIMEOUT_SECONDS)
        node = manifest.get("node_id")
        ours = manifest.get("community_id") == self.community_id and node != self.kp.node_id_full
        if ours and not self.members.is_member(str(node)):
            if not self.members.loaded:
                await self.members.refresh()
            if not self.members.is_member(str(node)):
                raise DiscoveryError("manifest_invalid", f"{node} {self.members.why_not(str(node))}",
                                     reason="not_member")
        return manifest

    async def _membership_changed(self, members: Membership) -> None:
        """A revoked node stops being a peer at once; a node that just joined is tried again."""
        for rec in self.registry.all():
            if not members.is_member(rec.node_id_full):
                log.warning("peer %s dropped: %s", rec.node_id_short, members.why_not(rec.node_id_full))
                self.registry.remove(rec.node_id_full)
        self.discovery.retry_refused()

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self.bus.start()
        self.members.on_change(self._membership_changed)
        self.members.start()
        self.registry.subscribe(self._on_peer_event)
        self._start_task = asyncio.ensure_future(self._start_discovery())
        self._caps_task = asyncio.ensure_future(self._refresh_caps())
        self._mode_task = asyncio.ensure_future(self._follow_mode())

    async def _follow_mode(self) -> None:
        """Emergency mode offline: announce at the active rate, prune dead peers after 30 s
        (spec svc-emergency-ui §1.6; the discovery hook is `Discovery.set_offline`)."""
        from hearthnet.emergency.follow import follow_mode

        await follow_mode(self.bus, lambda mode, state: self.discovery.set_offline(mode == "offline"),
                          caller=self.kp.node_id_full)

    async def _start_discovery(self) -> None:
        """Announce only an endpoint that answers. supervisord starts the gateway just
        before us, but it may still be starting up; a node that hears us and finds our port
        closed backs off and tries again only at our next announcement, which comes 30 s
        later once that node is settled (measured: 33 s instead of 3 s to a full mesh of 3)."""
        await self._wait_for_gateway()
        self._gateway_wait = False
        await self.discovery.start()

    async def _wait_for_gateway(self) -> None:
        host, port = self.cfg.transport.host, self.cfg.transport.port
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GATEWAY_WAIT_SECONDS
        while loop.time() < deadline:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(0.1)
                continue
            writer.close()
            with contextlib.suppress(OSError):  # the TLS server may drop a silent client first
                await writer.wait_closed()
            return
        log.warning("the gateway is not listening on %s:%s after %g s; announcing this node anyway",
                    host, port, GATEWAY_WAIT_SECONDS)

    async def stop(self) -> None:
        for task in (self._start_task, self._caps_task, getattr(self, "_mode_task", None)):
            if task is not None:
                task.cancel()
        if self._start_task is not None:
            await asyncio.gather(self._start_task, return_exceptions=True)
        await self.discovery.stop()
        await self.members.close()
        await self.bus.close()

    def health(self) -> dict[str, Any]:
        if self.registry.for_community(self.community_id):
            return {}
        return {"note": "no peers yet: " + "; ".join(self.discovery.diagnose())}

    async def _refresh_caps(self) -> None:
        while True:
            try:
                caps = (await self.bus.admin("caps"))["capabilities"]
                names = sorted({c["name"] for c in caps if c.get("local", True)
                                and c.get("trust_required") != "self"})
                if names != self.caps:
                    self.caps = names
                    await self.discovery.caps_changed()
            except HearthNetError as exc:
                log.debug("capability list unavailable", extra={"reason": exc.message})
            await asyncio.sleep(CAPS_REFRESH_SECONDS)

    def _on_peer_event(self, event: PeerEvent) -> None:
        frame = {"kind": event.kind, "peer": peer_doc(event.peer)}
        for queue in list(self.watchers):
            queue.put_nowait(frame)

    # ---- capabilities ----------------------------------------------------------------

    def capabilities(self) -> list[Capability]:
        common = {"stability": "beta", "trust_required": "self"}
        return [
            Capability(name="community.peers.list", handler=self.list_peers, idempotent=True,
                       max_concurrent=16, timeout_seconds=10, **common),
            Capability(name="community.peers.watch", handler=self.watch, max_concurrent=16,
                       stream_schema={"type": "object"}, timeout_seconds=365 * 86400, **common),
            Capability(name="community.peers.add", handler=self.add_peer, max_concurrent=4,
                       timeout_seconds=30, **common),
        ]

    async def list_peers(self, req: Request) -> dict[str, Any]:
        peers = [rec.to_json() for rec in self.registry.for_community(self.community_id)]
        if self._gateway_wait:
            diagnose = [f"discovery starts once this node's gateway listens on {self.cfg.transport.host}:"
                        f"{self.cfg.transport.port}"]
        else:
            diagnose = [] if peers else self.discovery.diagnose()
        return {"output": {"peers": peers, "discovery": self.discovery.status(), "diagnose": diagnose},
                "meta": {}}

    async def watch(self, req: Request) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        queue: asyncio.Queue = asyncio.Queue()
        self.watchers.add(queue)
        return self._watch(queue)

    async def _watch(self, queue: asyncio.Queue) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        try:
            for rec in self.registry.for_community(self.community_id):
                yield "peer", {"kind": "added", "peer": peer_doc(rec)}
            while True:
                yield "peer", await queue.get()
        finally:
            self.watchers.discard(queue)

    async def add_peer(self, req: Request) -> dict[str, Any]:
        address = req.input.get("address")
        if not isinstance(address, str) or not address:
            raise HearthNetError("bad_request", "input.address must be HOST:PORT")
        try:
            host, port = parse_host_port(address)
        except (ValueError, HearthNetError) as exc:
            raise HearthNetError("bad_request", getattr(exc, "message", str(exc))) from None
        entry = await self.discovery.add_manual(host, port)
        return {"output": {"added": f"{host}:{port}", "entry": _jsonable(entry)}, "meta": {}}


def _jsonable(entry: Any) -> Any:
    to_json = getattr(entry, "to_json", None)
    if callable(to_json):
        return to_json()
    return getattr(entry, "__dict__", str(entry))
