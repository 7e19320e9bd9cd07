"""Shared helpers: synthetic identities and signed manifests; no network."""
from __future__ import annotations

import socket
from datetime import datetime
from typing import Any

import pytest

from hearthnet.identity.keys import KeyPair, generate
from hearthnet.identity.manifest import build_node_manifest

HARDWARE = {"gpu": None, "vram_gb": 0, "ram_gb": 1, "cpu_cores": 1, "disk_free_gb": 1}
LOAD = {"cpu": 0.0, "vram_used_gb": 0, "in_flight_total": 0}


def make_manifest(kp: KeyPair, community_id: str, host: str = "10.0.0.2", port: int = 7080,
                  now: datetime | None = None, name: str = "peer", **extra: Any) -> dict[str, Any]:
    endpoint = {"transport": "https", "host": host, "port": port, **extra}
    return build_node_manifest(kp, display_name=name, community_id=community_id, profile="hearth",
                               endpoints=[endpoint], hardware=HARDWARE, capabilities=[], uptime_seconds=1,
                               load=LOAD, now=now)


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def me() -> KeyPair:
    return generate()


@pytest.fixture
def community() -> KeyPair:
    return generate()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def free_udp_port() -> int:
    """A currently unused UDP port on loopback (for tests that must not collide with a
    real node's 42424)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
