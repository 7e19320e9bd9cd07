"""advertised_endpoints: what the node manifest lists, from `discovery.interfaces` (an
overlay interface such as wg0 included) — on a stubbed interface table."""
from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from hearthnet.transport.endpoints import advertised_endpoints

ADDRS = {
    "lo": [SimpleNamespace(family=socket.AF_INET, address="127.0.0.1")],
    "eth0": [SimpleNamespace(family=socket.AF_INET, address="192.168.1.5"),
             SimpleNamespace(family=socket.AF_INET6, address="fe80::1%eth0")],
    "wg0": [SimpleNamespace(family=socket.AF_INET, address="10.99.0.1")],
    "ygg0": [SimpleNamespace(family=socket.AF_INET6, address="200:1234::1")],
}


def cfg(host: str, interfaces: tuple[str, ...] = ()) -> Any:
    return SimpleNamespace(transport=SimpleNamespace(host=host, port=7080),
                           discovery=SimpleNamespace(interfaces=interfaces))


@pytest.fixture(autouse=True)
def fake_interfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: ADDRS)


def hosts(c: Any) -> list[str]:
    return [e["host"] for e in advertised_endpoints(c)]


def test_an_overlay_interface_in_discovery_interfaces_is_advertised() -> None:
    assert hosts(cfg("0.0.0.0", ("eth0", "wg0"))) == ["192.168.1.5", "10.99.0.1"]
    assert hosts(cfg("0.0.0.0", ("eth0",))) == ["192.168.1.5"]


def test_dual_stack_adds_global_ipv6_such_as_yggdrasil_but_not_link_local() -> None:
    assert hosts(cfg("::", ("eth0", "ygg0"))) == ["192.168.1.5", "200:1234::1"]
    assert "200:1234::1" not in hosts(cfg("0.0.0.0"))


def test_a_configured_host_is_advertised_as_is() -> None:
    assert hosts(cfg("10.99.0.1", ("eth0",))) == ["10.99.0.1"]
