"""Which local IPv4 addresses discovery may use (config `discovery.interfaces`).

`()` means every interface. A non-empty list is strict: only the addresses of those
interfaces are ever used for sending or joining multicast groups, and a name that does
not exist (or has no IPv4 address yet) selects nothing rather than falling back to all.
Entries are interface names ("eth0", "veth0") or IPv4 literals of a local address.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Sequence

import ifaddr  # zeroconf's own dependency: one enumeration for UDP and mDNS alike


@dataclass(frozen=True)
class InterfaceAddr:
    name: str
    ip: str
    prefix: int

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.ip}/{self.prefix}", strict=False)

    @property
    def is_loopback(self) -> bool:
        return ipaddress.IPv4Address(self.ip).is_loopback

    def contains(self, host: str) -> bool:
        try:
            return ipaddress.IPv4Address(host) in self.network
        except ValueError:
            return False


@dataclass(frozen=True)
class Selection:
    addrs: tuple[InterfaceAddr, ...]
    missing: tuple[str, ...] = field(default=())  # configured entries that matched nothing
    strict: bool = False  # True when the operator named interfaces

    def describe(self) -> str:
        return ", ".join(f"{a.name} ({a.ip})" for a in self.addrs) or "none"


def list_ipv4() -> list[InterfaceAddr]:
    """Every IPv4 address on this host (in this network namespace)."""
    found: list[InterfaceAddr] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):  # IPv6 entries carry a tuple
                found.append(InterfaceAddr(str(adapter.name), ip.ip, int(ip.network_prefix)))
    return found


def _is_ipv4_literal(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def select(names: Sequence[str], available: Sequence[InterfaceAddr] | None = None) -> Selection:
    """Resolve the configured interface list against what exists right now."""
    avail = list_ipv4() if available is None else list(available)
    if not names:
        return Selection(tuple(avail), (), strict=False)
    chosen: list[InterfaceAddr] = []
    missing: list[str] = []
    for entry in names:
        key = "ip" if _is_ipv4_literal(entry) else "name"
        hits = [a for a in avail if getattr(a, key) == entry]
        if not hits and not (available is None and _ipv6_only_overlay(entry)):
            missing.append(entry)
        chosen.extend(h for h in hits if h not in chosen)
    return Selection(tuple(chosen), tuple(missing), strict=True)


def _ipv6_only_overlay(name: str) -> bool:
    """An overlay interface with IPv6 addresses only (Yggdrasil): named in
    `discovery.interfaces` so the manifest advertises it, never used for multicast, and not
    "missing" (which would warn for good)."""
    from hearthnet.discovery.overlay import interface_kind

    has_v6 = any(str(a.name) == name and any(isinstance(ip.ip, tuple) for ip in a.ips) for a in ifaddr.get_adapters())
    return has_v6 and interface_kind(name) is not None


def advertised(selection: Selection) -> list[str]:
    """Addresses to tell other machines about: loopback is useless to them, unless it is
    all we have (several nodes on one offline host still find each other then)."""
    outside = [a.ip for a in selection.addrs if not a.is_loopback]
    return outside or [a.ip for a in selection.addrs]


def best_host(candidates: Sequence[str], selection: Selection) -> str | None:
    """Of a peer's addresses, prefer one on a subnet we share with it."""
    for host in candidates:
        if any(a.contains(host) for a in selection.addrs):
            return host
    return candidates[0] if candidates else None
