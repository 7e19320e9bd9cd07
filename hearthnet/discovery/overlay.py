"""Is a peer reached over an overlay network (WireGuard, Tailscale/Headscale, Yggdrasil)?

Nodes on different streets reach each other over an overlay the community already runs;
multicast (mDNS, the UDP beacon) never crosses one, so such a peer is only ever known from
the peer cache (`hearthnet peer add`). `doctor` uses this module to say so.

How we decide, for a peer address: the kernel picks the local address it would send from
(a UDP socket's connect() — no packet leaves), that address names the local interface, and
the route is an overlay when any of these holds:

* the interface is a WireGuard device (`DEVTYPE=wireguard` in /sys/class/net/IF/uevent:
  the kernel module), or a layer-3 tunnel (/sys/class/net/IF/type 65534, ARPHRD_NONE: what
  wireguard-go, tailscaled and yggdrasil create as TUN devices);
* its name looks like one (wg*, tailscale*, ygg*, zt*, nebula*, ts*);
* the peer address is in an overlay range: 100.64.0.0/10 (Tailscale's CGNAT range),
  fd7a:115c:a1e0::/48 (Tailscale IPv6), 200::/7 (Yggdrasil).
"""
from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from hearthnet.discovery.cache import format_address

SYS_NET = Path("/sys/class/net")
ARPHRD_NONE = 65534  # TUN devices: no link layer (wireguard-go, tailscaled, yggdrasil)
OVERLAY_RANGES = {
    "Tailscale": (ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("fd7a:115c:a1e0::/48")),
    "Yggdrasil": (ipaddress.ip_network("200::/7"),),
}
NAME_PATTERN = re.compile(r"^(wg|tailscale|ts|ygg|zt|nebula)", re.IGNORECASE)


@dataclass(frozen=True)
class Route:
    """How this machine reaches one address: the interface and why it counts as overlay."""

    host: str
    interface: str | None  # None: no route, or no interface holds the source address
    overlay: str | None  # "WireGuard interface", "tunnel interface", "Tailscale range", ... or None

    @property
    def is_overlay(self) -> bool:
        return self.overlay is not None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def interface_kind(name: str, sys_net: Path = SYS_NET) -> str | None:
    """'WireGuard interface' / 'tunnel interface' for an overlay-looking interface, else None."""
    if not name or "/" in name:
        return None
    base = sys_net / name
    if "DEVTYPE=wireguard" in _read(base / "uevent").split():
        return "WireGuard interface"
    if _read(base / "type").strip() == str(ARPHRD_NONE):
        return "tunnel interface"
    if NAME_PATTERN.match(name):
        return "overlay-named interface"
    return None


def address_range(host: str) -> str | None:
    """'Tailscale range' / 'Yggdrasil range' when `host` is an overlay address."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    for name, nets in OVERLAY_RANGES.items():
        if any(addr.version == n.version and addr in n for n in nets):
            return f"{name} range"
    return None


def source_address(host: str, port: int = 7080) -> str | None:
    """The local address the kernel would send to `host` from (connect() on a UDP socket
    picks the route; nothing is sent). None when there is no route."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return None
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, port))
        except OSError:
            return None
        return str(s.getsockname()[0]).split("%")[0]


def interface_of(local_ip: str) -> str | None:
    import psutil

    for name, addrs in psutil.net_if_addrs().items():
        if any(a.address.split("%")[0] == local_ip for a in addrs):
            return name
    return None


def route_to(host: str, port: int = 7080) -> Route:
    src = source_address(host, port)
    iface = interface_of(src) if src else None
    why = (interface_kind(iface) if iface else None) or address_range(host)
    return Route(host, iface, why)


def local_lan_networks(sys_net: Path = SYS_NET) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The subnets of this machine's non-overlay, non-loopback interfaces: a peer address in
    one of them is on a LAN we share, where multicast discovery can see it."""
    import psutil

    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for name, addrs in psutil.net_if_addrs().items():
        if interface_kind(name, sys_net):
            continue
        for a in addrs:
            if a.family not in (socket.AF_INET, socket.AF_INET6) or not a.netmask:
                continue
            try:
                net = ipaddress.ip_interface(f"{a.address.split('%')[0]}/{a.netmask}").network
            except ValueError:
                continue
            if not net.network_address.is_loopback and not net.network_address.is_link_local:
                nets.append(net)
    return nets


def shares_lan(endpoints: Iterable[Mapping[str, Any]], lans: Iterable[Any]) -> bool:
    """Does any advertised endpoint of a peer sit on one of our LAN subnets?"""
    lans = list(lans)
    for ep in endpoints:
        try:
            addr = ipaddress.ip_address(str(ep.get("host", "")))
        except ValueError:
            continue
        if address_range(str(addr)) is None and any(addr.version == n.version and addr in n for n in lans):
            return True
    return False


def overlay_only(peer: Mapping[str, Any], lans: Iterable[Any]) -> Route | None:
    """The overlay route when `peer` (a community.peers.list entry: host, port, endpoints)
    is reached over an overlay and shares no LAN with us; else None."""
    host = str(peer.get("host") or "")
    if not host:
        return None
    route = route_to(host, int(peer.get("port") or 7080))
    if not route.is_overlay or shares_lan(peer.get("endpoints") or (), lans):
        return None
    return route


@dataclass(frozen=True)
class OverlayPeer:
    name: str
    address: str  # host:port we reach it at
    route: Route
    kept: bool  # a manual entry of the peer cache: found again after every restart

    def sentence(self) -> str:
        why = self.route.overlay or "overlay"
        head = f"{self.name} is reached over {self.route.interface or '?'} only ({why})"
        if self.kept:
            return f"{head}; mDNS/UDP discovery cannot see it, it is kept in the peer cache as a manual peer"
        return (f"{head}; mDNS/UDP discovery cannot see it and it is not a manual peer: after a restart "
                "it is found only while its cache entry lasts (30 days unverified)")


def overlay_peers(peers: Iterable[Mapping[str, Any]], manual: Iterable[tuple[str, int]],
                  lans: Iterable[Any] | None = None) -> list[OverlayPeer]:
    """The peers (community.peers.list entries) reached over an overlay only, with whether
    the peer cache holds them as manual peers (`manual`: their (host, port))."""
    lans = local_lan_networks() if lans is None else list(lans)
    kept = set(manual)
    out = []
    for p in peers:
        route = overlay_only(p, lans)
        if route is None:
            continue
        port = int(p.get("port") or 7080)
        out.append(OverlayPeer(str(p.get("display_name") or p.get("node_id_short") or route.host),
                               format_address(route.host, port), route, (route.host, port) in kept))
    return out
