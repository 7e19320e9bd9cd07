"""LAN discovery: UDP multicast + mDNS announce/browse, manifest fetch and verification,
the in-memory peer registry and the persistent peer cache (spec core-events-discovery §9).

The discovery worker process builds a `Discovery` with an injected `fetch_manifest`
(TLS + pinning in production) and wires `PeerRegistry.subscribe` to the broker.
"""
from __future__ import annotations

from hearthnet.discovery.cache import CachedPeer, PeerCache, parse_host_port
from hearthnet.discovery.errors import DiscoveryError
from hearthnet.discovery.registry import PeerEvent, PeerRecord, PeerRegistry
from hearthnet.discovery.service import Discovery

__all__ = [
    "CachedPeer",
    "Discovery",
    "DiscoveryError",
    "PeerCache",
    "PeerEvent",
    "PeerRecord",
    "PeerRegistry",
    "parse_host_port",
]
