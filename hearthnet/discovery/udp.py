"""UDP multicast announce + listen (spec core-events-discovery §9.2; DESIGN.md §5).

Wire format, unsigned JSON of at most 1 KB, keys in exactly this order:
    {"v":1,"node":"<short id>","community":"<short community id>","port":7080,"caps":[...]}
The sender's IP is not in the packet: the datagram's source address is where its
manifest lives (`https://<src>:<port>/manifest`).

Sockets, one pair per selected interface address:
- listen: SO_REUSEADDR + SO_REUSEPORT (several nodes per host), bound to group:port,
  joined on that interface only, IP_MULTICAST_ALL off so it only hears what *it* joined
  (Linux otherwise delivers groups joined by any socket on any interface).
- send: bound to the interface address with IP_MULTICAST_IF on it, TTL 1 (LAN only),
  loopback on so other nodes on this host hear us.
SO_BINDTODEVICE is added where permitted (it needs CAP_NET_RAW); the explicit interface
address already pins both directions without it.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import socket
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from hearthnet.ratelog import RateLimitedLog
from hearthnet.discovery.errors import DiscoveryError
from hearthnet.discovery.interfaces import InterfaceAddr
from hearthnet.identity.keys import SHORT_ID_RE

log = logging.getLogger(__name__)

DEFAULT_GROUP = "239.255.42.42"
DEFAULT_PORT = 42424
PACKET_VERSION = 1
MAX_PACKET_BYTES = 1024
ACTIVE_INTERVAL_SECONDS = 5.0  # while fewer than STABLE_PEER_COUNT peers are known
STABLE_INTERVAL_SECONDS = 30.0
STABLE_PEER_COUNT = 2
POKE_MIN_GAP_SECONDS = 1.0  # an early announcement never follows the last within 1 s
LAN_TTL = 1
# Linux value; Python's socket module does not export it.
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)


# --------------------------------------------------------------------------- packets


class MalformedPacket(ValueError):
    """A datagram on the discovery port that is not a v1 announcement."""


@dataclass(frozen=True)
class Announcement:
    node: str  # short node id
    community: str  # short community id
    port: int  # transport port of the sender
    caps: tuple[str, ...]


@dataclass(frozen=True)
class UdpSighting:
    announcement: Announcement
    host: str  # the datagram's source address
    via: InterfaceAddr  # our interface it arrived on


def build_packet(node: str, community: str, port: int, caps: Iterable[str]) -> bytes:
    """The announcement bytes; capability names are dropped from the end until it fits
    in MAX_PACKET_BYTES (the manifest has the full list anyway)."""
    names = list(caps)
    while True:
        doc = {"v": PACKET_VERSION, "node": node, "community": community, "port": port, "caps": names}
        data = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(data) <= MAX_PACKET_BYTES:
            return data
        if not names:
            raise ValueError("announcement does not fit in 1 KB even without capabilities")
        names.pop()


def _require_short_id(doc: dict[str, object], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not SHORT_ID_RE.match(value):
        raise MalformedPacket(f"{key!r} is not a short id")
    return value


def parse_packet(data: bytes) -> Announcement:
    """Raise MalformedPacket unless `data` is a well-formed v1 announcement. Unknown
    extra keys are tolerated so a later minor version can add fields."""
    if len(data) > MAX_PACKET_BYTES:
        raise MalformedPacket(f"{len(data)} bytes is over the {MAX_PACKET_BYTES}-byte limit")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedPacket(f"not UTF-8 JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedPacket("not a JSON object")
    version = doc.get("v")
    if type(version) is not int or version != PACKET_VERSION:
        raise MalformedPacket(f"unsupported version {version!r}")
    node, community = _require_short_id(doc, "node"), _require_short_id(doc, "community")
    port = doc.get("port")
    if type(port) is not int or not 1 <= port <= 65535:
        raise MalformedPacket(f"bad port {port!r}")
    caps = doc.get("caps")
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise MalformedPacket("caps is not a list of names")
    return Announcement(node, community, port, tuple(caps))


def announce_interval(peer_count: int, offline: bool = False) -> float:
    """5 s while the node is still looking (few peers, or offline), 30 s once settled."""
    if offline or peer_count < STABLE_PEER_COUNT:
        return ACTIVE_INTERVAL_SECONDS
    return STABLE_INTERVAL_SECONDS


def non_default_warning(group: str, port: int) -> str | None:
    if (group, port) == (DEFAULT_GROUP, DEFAULT_PORT):
        return None
    return (f"UDP discovery uses {group}:{port} instead of the standard {DEFAULT_GROUP}:{DEFAULT_PORT}; "
            "nodes with the standard setting will not see this node")


# --------------------------------------------------------------------------- sockets


def _bind_to_device(sock: socket.socket, iface: InterfaceAddr) -> None:
    """Best effort: SO_BINDTODEVICE needs CAP_NET_RAW, and the interface address set on
    the socket already pins the interface, so refusal only costs belt-and-braces."""
    option = getattr(socket, "SO_BINDTODEVICE", None)
    if option is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, iface.name.encode())
    except OSError as exc:
        log.debug("SO_BINDTODEVICE %s not applied: %s", iface.name, exc.strerror)


def _only_joined_groups(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
    except OSError as exc:  # not Linux: the per-interface membership is all we have
        log.debug("IP_MULTICAST_ALL not available: %s", exc.strerror)


def _socket_error(exc: OSError, what: str, port: int) -> Exception:
    if exc.errno == errno.EADDRINUSE:
        return DiscoveryError("socket_in_use", f"UDP port {port} is held by a program that does not "
                                               f"share it (no SO_REUSEPORT): {exc.strerror}")
    return OSError(f"{what}: {exc.strerror or exc}")  # one-argument form: no "[Errno n]" noise


def open_listen_socket(group: str, port: int, iface: InterfaceAddr) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        _only_joined_groups(sock)
        _bind_to_device(sock, iface)
        # Bound to the group (not INADDR_ANY) so unicast to the port is not delivered.
        sock.bind((group, port))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                        socket.inet_aton(group) + socket.inet_aton(iface.ip))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise _socket_error(exc, f"cannot listen on {group}:{port} via {iface.name} ({iface.ip})", port) from exc
    return sock


def open_send_socket(iface: InterfaceAddr, ttl: int = LAN_TTL) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(iface.ip))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        _bind_to_device(sock, iface)
        sock.bind((iface.ip, 0))  # source address = this interface's address
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise _socket_error(exc, f"cannot send via {iface.name} ({iface.ip})", 0) from exc
    return sock


# --------------------------------------------------------------------------- listener


@dataclass
class UdpStats:
    received: int = 0
    own: int = 0  # our own announcements looped back: the socket path works
    malformed: int = 0
    from_others: int = 0
    last_from_other: float | None = None  # monotonic


class _ListenProtocol(asyncio.DatagramProtocol):
    def __init__(self, listener: "UdpListener", iface: InterfaceAddr) -> None:
        self._listener = listener
        self._iface = iface

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._listener.handle_datagram(data, addr[0], self._iface)

    def error_received(self, exc: Exception) -> None:
        log.warning("UDP discovery socket on %s: %s", self._iface.name, exc)


class _Joined:
    """Open transports keyed by interface address, shared by listener and announcer."""

    def __init__(self) -> None:
        self.transports: dict[InterfaceAddr, asyncio.DatagramTransport] = {}

    def drop_missing(self, wanted: Sequence[InterfaceAddr]) -> None:
        for iface in [i for i in self.transports if i not in wanted]:
            self.transports.pop(iface).close()

    def close(self) -> None:
        for transport in self.transports.values():
            transport.close()
        self.transports.clear()


class UdpListener:
    """Receives announcements; calls `on_sighting` for every valid one not from us."""

    def __init__(self, our_node_short: str, on_sighting: Callable[[UdpSighting], None], *,
                 group: str = DEFAULT_GROUP, port: int = DEFAULT_PORT, strict: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ours = our_node_short
        self._on_sighting = on_sighting
        self.group, self.port, self.strict = group, port, strict
        self._clock = clock
        self._joined = _Joined()
        self._ratelog = RateLimitedLog(log)
        self.stats = UdpStats()

    @property
    def interfaces(self) -> list[InterfaceAddr]:
        return list(self._joined.transports)

    async def sync(self, wanted: Sequence[InterfaceAddr]) -> dict[str, Exception]:
        """Listen on exactly `wanted`: join new interfaces, leave vanished ones. Returns
        {ip: error} for interfaces that could not be joined."""
        self._joined.drop_missing(wanted)
        loop = asyncio.get_running_loop()
        errors: dict[str, Exception] = {}
        for iface in wanted:
            if iface in self._joined.transports:
                continue
            try:
                sock = open_listen_socket(self.group, self.port, iface)
            except (DiscoveryError, OSError) as exc:
                errors[iface.ip] = exc
                continue
            transport, _ = await loop.create_datagram_endpoint(lambda i=iface: _ListenProtocol(self, i), sock=sock)
            self._joined.transports[iface] = transport
        return errors

    def close(self) -> None:
        self._joined.close()

    def handle_datagram(self, data: bytes, host: str, via: InterfaceAddr) -> None:
        self.stats.received += 1
        try:
            ann = parse_packet(data)
        except MalformedPacket as exc:
            self.stats.malformed += 1
            self._ratelog.warning(f"malformed:{host}", "dropped a malformed discovery packet from %s: %s", host, exc)
            return
        if ann.node == self._ours:
            self.stats.own += 1
            return
        # Strict mode: a sender outside the interface's subnet did not come over that LAN.
        if self.strict and not via.contains(host):
            self._ratelog.warning(f"offlink:{host}", "ignored a discovery packet from %s, outside %s",
                                  host, via.network)
            return
        self.stats.from_others += 1
        self.stats.last_from_other = self._clock()
        self._on_sighting(UdpSighting(ann, host, via))


# --------------------------------------------------------------------------- announcer


class _SendProtocol(asyncio.DatagramProtocol):
    def __init__(self, announcer: "UdpAnnouncer", iface: InterfaceAddr) -> None:
        self._announcer = announcer
        self._iface = iface

    def error_received(self, exc: Exception) -> None:
        self._announcer.last_error = f"{self._iface.name} ({self._iface.ip}): {exc}"
        log.warning("UDP announcement via %s failed: %s", self._iface.name, exc)


class UdpAnnouncer:
    """Multicasts `packet()` on every interface, every `interval()` seconds, or sooner
    after `poke()` (a newcomer should not wait 30 s to learn about us)."""

    def __init__(self, packet: Callable[[], bytes], interval: Callable[[], float], *,
                 group: str = DEFAULT_GROUP, port: int = DEFAULT_PORT, ttl: int = LAN_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._packet, self._interval = packet, interval
        self.group, self.port, self.ttl = group, port, ttl
        self._clock = clock
        self._joined = _Joined()
        self._wake = asyncio.Event()
        self._last_sent = float("-inf")
        self.sent = 0
        self.last_error: str | None = None

    @property
    def interfaces(self) -> list[InterfaceAddr]:
        return list(self._joined.transports)

    async def sync(self, wanted: Sequence[InterfaceAddr]) -> dict[str, Exception]:
        """Send on exactly `wanted`; returns {ip: error} for interfaces that failed."""
        self._joined.drop_missing(wanted)
        loop = asyncio.get_running_loop()
        errors: dict[str, Exception] = {}
        for iface in wanted:
            if iface in self._joined.transports:
                continue
            try:
                sock = open_send_socket(iface, self.ttl)
            except (DiscoveryError, OSError) as exc:
                errors[iface.ip] = exc
                continue
            transport, _ = await loop.create_datagram_endpoint(lambda i=iface: _SendProtocol(self, i), sock=sock)
            self._joined.transports[iface] = transport
        return errors

    def send_now(self) -> int:
        """One announcement on every interface; returns how many were handed to the kernel."""
        data = self._packet()
        count = 0
        for iface, transport in list(self._joined.transports.items()):
            try:
                transport.sendto(data, (self.group, self.port))
                count += 1
            except OSError as exc:  # e.g. the interface went down: note it, keep the others
                self.last_error = f"{iface.name} ({iface.ip}): {exc.strerror or exc}"
                log.warning("UDP announcement via %s failed: %s", iface.name, exc)
        self._last_sent = self._clock()
        self.sent += count
        return count

    def poke(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self.send_now()
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval())
            gap = self._last_sent + POKE_MIN_GAP_SECONDS - self._clock()
            if gap > 0:
                await asyncio.sleep(gap)

    def close(self) -> None:
        self._joined.close()
