"""The orchestrator with UDP/mDNS off (no network) and injected fetchers; plus one run
of two services over loopback-only UDP (IP_MULTICAST_IF=127.0.0.1, TTL 0)."""
from __future__ import annotations

import asyncio
import json
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any, Awaitable, Callable

from hearthnet.config import DiscoveryConfig
from hearthnet.discovery.cache import PeerCache
from hearthnet.discovery.interfaces import InterfaceAddr
from hearthnet.discovery.registry import PeerEvent, PeerRegistry
from hearthnet.discovery.service import Discovery
from hearthnet.discovery.udp import Announcement, UdpSighting
from hearthnet.identity.keys import KeyPair, generate, short_node_id
from hearthnet.identity.manifest import utcnow

from .conftest import FakeClock, free_udp_port, make_manifest

OFF = DiscoveryConfig(udp_enabled=False, mdns_enabled=False)
LAN = InterfaceAddr("eth9", "10.0.0.1", 24)


class Wall:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):
        return self.now


class Net:
    """Fake `fetch_manifest`: (host, port) -> a key pair (served fresh) or an exception."""

    def __init__(self, community_id: str, wall: Wall) -> None:
        self.community_id, self.wall = community_id, wall
        self.hosts: dict[tuple[str, int], KeyPair | BaseException | dict[str, Any]] = {}
        self.calls: list[tuple[str, int]] = []

    async def fetch(self, host: str, port: int) -> dict[str, Any]:
        self.calls.append((host, port))
        what = self.hosts.get((host, port), ConnectionRefusedError(111, "Connection refused"))
        if isinstance(what, BaseException):
            raise what
        if isinstance(what, dict):
            return what
        return make_manifest(what, self.community_id, host, port, now=self.wall())


class Harness:
    def __init__(self, tmp_path: Path, config: DiscoveryConfig = OFF, **kw: Any) -> None:
        self.me, self.community = generate(), generate()
        self.clock, self.wall = FakeClock(), Wall()
        self.net = Net(self.community.node_id_full, self.wall)
        self.registry = PeerRegistry(self.me.node_id_full, self.community.node_id_full, clock=self.clock,
                                     wallclock=self.wall)
        self.events: list[PeerEvent] = []
        self.registry.subscribe(self.events.append)
        self.cache = PeerCache(tmp_path / "peers.json", wallclock=self.wall, clock=self.clock)
        self.disc = Discovery(config, self.me, self.community.node_id_full, 7080, "me", "hearth",
                              lambda: ["llm.chat"], self.net.fetch, self.registry, self.cache, tmp_path,
                              clock=self.clock, wallclock=self.wall, **kw)

    async def settle(self) -> None:
        """Let every spawned manifest fetch finish (the tick loop itself sleeps)."""
        for _ in range(50):
            pending = [t for t in self.disc._tasks if t.get_name().startswith("manifest")]
            if not pending:
                return
            await asyncio.gather(*pending, return_exceptions=True)
        raise AssertionError("fetches did not settle")

    def sighting(self, kp: KeyPair, host: str = "10.0.0.2", port: int = 7080, community: str | None = None) -> None:
        cid = community or self.community.node_id_full
        self.disc._on_udp(UdpSighting(Announcement(kp.node_id_short, short_node_id(cid), port, ()), host, LAN))


def run(tmp_path: Path, body: Callable[[Harness], Awaitable[None]], **kw: Any) -> Harness:
    h = Harness(tmp_path, **kw)

    async def main() -> None:
        await h.disc.start()
        try:
            await body(h)
        finally:
            await h.disc.stop()

    asyncio.run(main())
    return h


def test_announcement_for_our_community_adds_the_peer(tmp_path):
    peer = generate()

    async def body(h: Harness) -> None:
        h.net.hosts[("10.0.0.2", 7080)] = peer
        h.sighting(peer)
        await h.settle()
        (rec,) = h.registry.all()
        assert (rec.node_id_full, rec.source, rec.host, rec.port) == (peer.node_id_full, "udp", "10.0.0.2", 7080)
        h.sighting(peer)  # already a fresh peer: no refetch
        await h.settle()
        assert h.net.calls == [("10.0.0.2", 7080)]
        assert h.disc.diagnose() == []

    h = run(tmp_path, body)
    assert [e.kind for e in h.events] == ["added"]
    assert [(e.node_id, e.how_found) for e in h.cache.load()] == [(peer.node_id_full, "udp")]


def test_manual_peer_is_tried_at_once_and_cached(tmp_path):
    peer = generate()

    async def body(h: Harness) -> None:
        h.net.hosts[("10.0.0.5", 7080)] = peer
        await h.disc.add_manual("10.0.0.5", 7080)
        await h.settle()
        assert [p.source for p in h.registry.all()] == ["manual"]

    h = run(tmp_path, body)
    (entry,) = h.cache.load()
    assert entry.manual and entry.node_id == peer.node_id_full


def test_unreachable_manual_peer_is_explained(tmp_path):
    async def body(h: Harness) -> None:
        await h.disc.add_manual("10.0.0.5", 7080)
        await h.settle()
        reasons = h.disc.diagnose()
        assert any(r.startswith("manual peer 10.0.0.5:7080 unreachable: ") and "Connection refused" in r
                   for r in reasons), reasons
        assert h.disc.status()["pending"][0]["code"] == "manifest_fetch_failed"

    run(tmp_path, body)


def test_manual_peer_pointing_at_this_node(tmp_path):
    async def body(h: Harness) -> None:
        h.net.hosts[("127.0.0.1", 7080)] = h.me
        await h.disc.add_manual("127.0.0.1", 7080)
        await h.settle()
        assert h.registry.all() == []
        assert "manual peer 127.0.0.1:7080 is this node itself" in h.disc.diagnose()

    run(tmp_path, body)


def test_nodes_of_another_community_are_seen_not_fetched(tmp_path):
    theirs = generate().node_id_full
    x, y = generate(), generate()

    async def body(h: Harness) -> None:
        h.sighting(x, "10.0.0.3", community=theirs)
        h.sighting(y, "10.0.0.4", community=theirs)
        h.disc._on_mdns_foreign(x.node_id_short, short_node_id(theirs), "10.0.0.3")  # same node, other way
        await h.settle()
        assert h.net.calls == [] and h.registry.all() == []
        reasons = h.disc.diagnose()
        assert any(r.startswith(f"2 nodes seen from another community ({short_node_id(theirs)})") for r in reasons)
        assert {f["node_id_short"] for f in h.disc.status()["foreign"]} == {x.node_id_short, y.node_id_short}

    run(tmp_path, body)


def test_manual_peer_of_another_community_is_not_added(tmp_path):
    other = generate()

    async def body(h: Harness) -> None:
        h.net.hosts[("10.0.0.5", 7080)] = make_manifest(other, generate().node_id_full, now=h.wall())
        await h.disc.add_manual("10.0.0.5", 7080)
        await h.settle()
        assert h.registry.all() == []
        assert any("1 node seen from another community" in r for r in h.disc.diagnose())

    run(tmp_path, body)


def test_manifest_must_match_the_announced_node(tmp_path):
    announced, impostor = generate(), generate()

    async def body(h: Harness) -> None:
        h.net.hosts[("10.0.0.2", 7080)] = impostor
        h.sighting(announced)
        await h.settle()
        assert h.registry.all() == []
        assert any("sent an invalid manifest: announced as" in r for r in h.disc.diagnose())

    run(tmp_path, body)


def test_expired_manifest_points_at_the_clocks(tmp_path):
    peer = generate()

    async def body(h: Harness) -> None:
        h.net.hosts[("10.0.0.2", 7080)] = make_manifest(peer, h.community.node_id_full,
                                                        now=h.wall() - timedelta(minutes=10))
        h.sighting(peer)
        await h.settle()
        assert any("expired" in r and "check both machines' clocks" in r for r in h.disc.diagnose())

    run(tmp_path, body)


def test_expiring_manifests_are_refreshed_and_dead_peers_pruned(tmp_path):
    peer = generate()

    async def body(h: Harness) -> None:
        h.net.hosts[("10.0.0.2", 7080)] = peer
        h.sighting(peer)
        await h.settle()
        h.wall.now += timedelta(seconds=25)  # 5 s left on the manifest
        h.clock.advance(10)
        await h.disc.tick()
        await h.settle()
        assert len(h.net.calls) == 2 and h.registry.get(peer.node_id_full) is not None
        h.net.hosts[("10.0.0.2", 7080)] = ConnectionResetError(104, "Connection reset by peer")
        for _ in range(10):  # 100 s of failing refreshes
            h.wall.now += timedelta(seconds=10)
            h.clock.advance(10)
            await h.disc.tick()
            await h.settle()
        assert h.registry.all() == []

    h = run(tmp_path, body)
    assert [e.kind for e in h.events] == ["added", "updated", "removed"]


def test_cached_peers_are_retried_at_start(tmp_path):
    peer = generate()
    h = Harness(tmp_path)
    h.cache.record_verified(peer.node_id_full, "10.0.0.8", 7080, None, "mdns")
    h.net.hosts[("10.0.0.8", 7080)] = peer

    async def main() -> None:
        async with h.disc:
            await h.settle()
            assert [(p.node_id_full, p.source) for p in h.registry.all()] == [(peer.node_id_full, "cache")]
            json.dumps(h.disc.status())  # the CLI's --json needs this to serialise

    asyncio.run(main())


def test_both_mechanisms_off_is_explained(tmp_path):
    async def body(h: Harness) -> None:
        reasons = h.disc.diagnose()
        assert any("both turned off" in r for r in reasons)
        assert not any(r.startswith("no multicast socket") for r in reasons)
        status = h.disc.status()
        assert status["mechanisms"]["udp"] == {"enabled": False, "up": False, "error": None, "code": None,
                                               "interfaces": []}

    run(tmp_path, body)


def test_missing_interface_selects_nothing(tmp_path):
    """Strict interface list: a name that does not exist opens no socket at all."""
    config = DiscoveryConfig(interfaces=("hn-nonexistent0",))

    async def body(h: Harness) -> None:
        assert h.disc._udp is None and h.disc._mdns is None
        reasons = h.disc.diagnose()
        assert "configured interface hn-nonexistent0 does not exist or has no IPv4 address " \
               "(discovery.interfaces)" in reasons
        assert any(r.startswith("no multicast socket: none of the configured interfaces") for r in reasons)
        assert any(r.startswith("mDNS unavailable: none of the configured interfaces") for r in reasons)

    run(tmp_path, body, config=config)


def test_udp_port_held_exclusively_is_reported(tmp_path):
    port = free_udp_port()
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("239.255.42.42", port))
    config = DiscoveryConfig(mdns_enabled=False, udp_port=port, interfaces=("lo",))

    async def body(h: Harness) -> None:
        mech = h.disc.status()["mechanisms"]["udp"]
        assert (mech["up"], mech["code"]) == (False, "socket_in_use")
        assert any(r.startswith(f"no multicast socket: UDP port {port} is held") for r in h.disc.diagnose())

    try:
        run(tmp_path, body, config=config, udp_ttl=0)
    finally:
        blocker.close()


def test_two_services_find_each_other_over_loopback_udp(tmp_path):
    """Real sockets on lo only: IP_MULTICAST_IF=127.0.0.1, TTL 0, a private port."""
    port = free_udp_port()
    config = DiscoveryConfig(mdns_enabled=False, udp_port=port, interfaces=("lo",))
    community, wall = generate(), Wall()
    nodes = {7001: generate(), 7002: generate()}

    async def fetch(host: str, tport: int) -> dict[str, Any]:
        assert host == "127.0.0.1"
        return make_manifest(nodes[tport], community.node_id_full, host, tport)

    def service(tport: int) -> Discovery:
        kp = nodes[tport]
        registry = PeerRegistry(kp.node_id_full, community.node_id_full)
        return Discovery(config, kp, community.node_id_full, tport, f"n{tport}", "hearth", lambda: [], fetch,
                         registry, data_dir=tmp_path / str(tport), udp_ttl=0)

    async def main() -> None:
        a, b = service(7001), service(7002)
        async with a, b:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while len(a.registry) < 1 or len(b.registry) < 1:
                assert loop.time() < deadline, (a.diagnose(), b.diagnose())
                await asyncio.sleep(0.05)
            assert [p.node_id_full for p in a.registry.all()] == [nodes[7002].node_id_full]
            assert [p.node_id_full for p in b.registry.all()] == [nodes[7001].node_id_full]
            assert a.status()["mechanisms"]["udp"]["interfaces"] == ["lo (127.0.0.1)"]

    asyncio.run(main())


def test_spoofed_announcements_do_not_grow_memory(tmp_path, monkeypatch):
    import hearthnet.discovery.service as service_mod

    monkeypatch.setattr(service_mod, "MAX_TRACKED", 5)

    async def body(h: Harness) -> None:
        for i in range(20):
            h.sighting(generate(), f"10.0.1.{i}")
            h.sighting(generate(), f"10.0.2.{i}", community=generate().node_id_full)
        await h.settle()
        assert len(h.disc._targets) == 5 and len(h.disc._foreign) == 5
        await h.disc.add_manual("10.0.0.5", 7080)  # the user's own entries are always kept
        assert ("10.0.0.5", 7080) in h.disc._targets

    run(tmp_path, body)


def test_unrepeated_sightings_are_forgotten(tmp_path):
    async def body(h: Harness) -> None:
        h.sighting(generate(), "10.0.0.9")
        await h.settle()
        assert any("at 10.0.0.9:7080 (found by udp) unreachable: Connection refused" in r
                   for r in h.disc.diagnose()), h.disc.diagnose()
        h.clock.advance(601)
        h.wall.now += timedelta(seconds=601)
        await h.disc.tick()
        await h.settle()
        assert not any("10.0.0.9" in r for r in h.disc.diagnose())

    run(tmp_path, body)


def test_alone_on_a_working_multicast_network(tmp_path):
    """Loopback only (TTL 0): our own announcements come back, nobody else answers."""
    port = free_udp_port()
    config = DiscoveryConfig(mdns_enabled=False, udp_port=port, interfaces=("lo",))

    async def body(h: Harness) -> None:
        assert h.disc._udp is not None
        listener = h.disc._udp[0]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while listener.stats.own < 1:
            assert loop.time() < deadline, "own announcement never came back"
            await asyncio.sleep(0.02)
        reasons = h.disc.diagnose()
        assert any(r.startswith(f"multicast is working but no other node answered (UDP 239.255.42.42:{port} on lo)")
                   for r in reasons), reasons
        udp = h.disc.status()["udp"]
        assert udp["own"] >= 1 and udp["from_others"] == 0 and udp["last_from_other_seconds_ago"] is None

    run(tmp_path, body, config=config, udp_ttl=0)
