"""UDP packet format and listener logic without a network; one socket-level test on
loopback only (IP_MULTICAST_IF=127.0.0.1, TTL 0: the kernel never lets such a datagram
leave this host)."""
from __future__ import annotations

import asyncio
import json
import logging
import socket

import pytest

from hearthnet.discovery.errors import DiscoveryError
from hearthnet.discovery.interfaces import InterfaceAddr
from hearthnet.discovery.udp import (
    MAX_PACKET_BYTES,
    Announcement,
    MalformedPacket,
    UdpAnnouncer,
    UdpListener,
    UdpSighting,
    announce_interval,
    build_packet,
    non_default_warning,
    parse_packet,
)
from hearthnet.testing.waiting import wait_for_async

from .conftest import free_udp_port

NODE = "ed25519:ABCD-EFGH-IJKL-MNOP"
OTHER = "ed25519:QRST-UVWX-YZ23-4567"
COMMUNITY = "ed25519:AAAA-BBBB-CCCC-DDDD"
LAN = InterfaceAddr("eth9", "10.0.0.1", 24)
LO = InterfaceAddr("lo", "127.0.0.1", 8)


def test_packet_is_exactly_the_contract_bytes():
    data = build_packet(NODE, COMMUNITY, 7080, ["llm.chat", "rag.query"])
    assert data == (b'{"v":1,"node":"ed25519:ABCD-EFGH-IJKL-MNOP","community":"ed25519:AAAA-BBBB-CCCC-DDDD",'
                    b'"port":7080,"caps":["llm.chat","rag.query"]}')
    assert parse_packet(data) == Announcement(NODE, COMMUNITY, 7080, ("llm.chat", "rag.query"))


def test_packet_drops_capabilities_to_fit_1kb():
    caps = [f"service{i:03d}.operation" for i in range(100)]
    data = build_packet(NODE, COMMUNITY, 7080, caps)
    assert len(data) <= MAX_PACKET_BYTES
    kept = json.loads(data)["caps"]
    assert 0 < len(kept) < len(caps) and kept == caps[: len(kept)]


@pytest.mark.parametrize("data", [
    b"", b"\xff\xfe", b"not json", b"[1,2]", b'{"v":2}',
    json.dumps({"v": True, "node": NODE, "community": COMMUNITY, "port": 1, "caps": []}).encode(),
    json.dumps({"v": 1, "node": "ed25519:7H4G-Y9KL", "community": COMMUNITY, "port": 1, "caps": []}).encode(),
    json.dumps({"v": 1, "node": NODE, "community": "x", "port": 1, "caps": []}).encode(),
    json.dumps({"v": 1, "node": NODE, "community": COMMUNITY, "port": 0, "caps": []}).encode(),
    json.dumps({"v": 1, "node": NODE, "community": COMMUNITY, "port": "7080", "caps": []}).encode(),
    json.dumps({"v": 1, "node": NODE, "community": COMMUNITY, "port": 7080, "caps": "llm.chat"}).encode(),
    json.dumps({"v": 1, "node": NODE, "community": COMMUNITY, "port": 7080}).encode(),
    json.dumps({"v": 1, "node": NODE, "community": COMMUNITY, "port": 7080, "caps": ["x" * 1100]}).encode(),
])
def test_malformed_packets_are_rejected(data):
    with pytest.raises(MalformedPacket):
        parse_packet(data)


def test_unknown_extra_keys_are_tolerated():
    doc = {"v": 1, "node": NODE, "community": COMMUNITY, "port": 7080, "caps": [], "future": 1}
    assert parse_packet(json.dumps(doc).encode()).node == NODE


def test_interval_and_port_warning():
    assert announce_interval(0) == announce_interval(1) == 5.0
    assert announce_interval(2) == announce_interval(10) == 30.0
    assert announce_interval(5, offline=True) == 5.0
    assert non_default_warning("239.255.42.42", 42424) is None
    assert "instead of the standard" in (non_default_warning("239.255.42.42", 4000) or "")


def _listener(strict: bool = False) -> tuple[UdpListener, list[UdpSighting]]:
    seen: list[UdpSighting] = []
    return UdpListener(NODE, seen.append, strict=strict), seen


def test_listener_reports_others_and_ignores_itself():
    listener, seen = _listener()
    listener.handle_datagram(build_packet(NODE, COMMUNITY, 7080, []), "10.0.0.1", LAN)
    listener.handle_datagram(build_packet(OTHER, COMMUNITY, 7081, ["llm.chat"]), "10.0.0.7", LAN)
    assert [(s.announcement.node, s.host, s.announcement.port) for s in seen] == [(OTHER, "10.0.0.7", 7081)]
    assert (listener.stats.own, listener.stats.from_others) == (1, 1)


def test_malformed_packets_are_logged_rate_limited(caplog):
    listener, seen = _listener()
    with caplog.at_level(logging.WARNING, logger="hearthnet.discovery.udp"):
        for _ in range(5):
            listener.handle_datagram(b"garbage", "10.0.0.9", LAN)
    assert seen == [] and listener.stats.malformed == 5
    assert len([r for r in caplog.records if "malformed" in r.getMessage()]) == 1


def test_strict_listener_drops_senders_outside_the_interface_subnet():
    listener, seen = _listener(strict=True)
    listener.handle_datagram(build_packet(OTHER, COMMUNITY, 7080, []), "192.168.5.5", LAN)
    assert seen == []
    listener.handle_datagram(build_packet(OTHER, COMMUNITY, 7080, []), "10.0.0.5", LAN)
    assert len(seen) == 1


def test_announcer_and_listener_over_loopback_only():
    """Real sockets, bound to 127.0.0.1 with IP_MULTICAST_IF=127.0.0.1 and TTL 0."""
    port = free_udp_port()

    async def scenario() -> None:
        seen: list[UdpSighting] = []
        listener = UdpListener(OTHER, seen.append, port=port, strict=True)
        mine = UdpAnnouncer(lambda: build_packet(NODE, COMMUNITY, 7080, ["llm.chat"]), lambda: 60.0, port=port, ttl=0)
        theirs = UdpAnnouncer(lambda: build_packet(OTHER, COMMUNITY, 7090, []), lambda: 60.0, port=port, ttl=0)
        try:
            assert await listener.sync([LO]) == {}
            assert await mine.sync([LO]) == {} and await theirs.sync([LO]) == {}
            for sock_owner in (mine, theirs):
                for transport in sock_owner._joined.transports.values():
                    sock = transport.get_extra_info("socket")
                    iface = sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, 4)
                    assert socket.inet_ntoa(iface) == "127.0.0.1"
                    assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL) == 0
            assert mine.send_now() == 1 and theirs.send_now() == 1
            await wait_for_async(lambda: listener.stats.received >= 2, 5, 0.02, message="both beacons received")
            assert [(s.announcement.node, s.host) for s in seen] == [(NODE, "127.0.0.1")]
            assert listener.stats.own == 1
        finally:
            for part in (listener, mine, theirs):
                part.close()

    asyncio.run(scenario())


def test_port_held_without_reuse_is_socket_in_use():
    port = free_udp_port()
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # no SO_REUSE*: exclusive
    blocker.bind(("239.255.42.42", port))  # binding alone sends nothing

    async def scenario() -> None:
        listener = UdpListener(NODE, lambda s: None, port=port)
        try:
            errors = await listener.sync([LO])
        finally:
            listener.close()
        err = errors["127.0.0.1"]
        assert isinstance(err, DiscoveryError) and err.code == "socket_in_use"
        assert listener.interfaces == []

    try:
        asyncio.run(scenario())
    finally:
        blocker.close()
