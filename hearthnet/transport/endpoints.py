"""Where peers reach this node: the endpoints its signed node manifest lists (the gateway,
governance and a joining node all need them, so they live below all three)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hearthnet.config import Config


def advertised_endpoints(cfg: "Config") -> list[dict[str, Any]]:
    """Where peers reach us: the configured host, or every non-loopback IPv4 address of
    the allowed interfaces (`discovery.interfaces`, which may name an overlay such as wg0 or
    tailscale0) when listening on all of them. Listening on `::` (dual stack) adds their
    global IPv6 addresses too, for IPv6-only overlays such as Yggdrasil (200::/7)."""
    host, port = cfg.transport.host, cfg.transport.port
    if host not in ("0.0.0.0", "", "::"):
        return [{"transport": "https", "host": host, "port": port}]
    import psutil

    allowed = set(cfg.discovery.interfaces)
    out = []
    for name, addrs in sorted(psutil.net_if_addrs().items()):
        if allowed and name not in allowed:
            continue
        for a in addrs:
            if a.family.name == "AF_INET" and not a.address.startswith("127."):
                out.append({"transport": "https", "host": a.address, "port": port})
            elif host == "::" and a.family.name == "AF_INET6" and _global_v6(a.address):
                out.append({"transport": "https", "host": a.address, "port": port})
    return out


def _global_v6(address: str) -> bool:
    """Not loopback and not link-local (fe80::, which needs a zone a peer cannot know)."""
    import ipaddress

    try:
        addr = ipaddress.IPv6Address(address.split("%")[0])
    except ValueError:
        return False
    return not (addr.is_loopback or addr.is_link_local)
