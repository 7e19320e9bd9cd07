"""Overlay detection (hearthnet/discovery/overlay.py) and doctor's overlay_peers check,
on a fake /sys/class/net and a stubbed route lookup: no network."""
from __future__ import annotations

import ipaddress
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hearthnet import doctor
from hearthnet.discovery import overlay
from hearthnet.discovery.cache import PeerCache
from hearthnet.discovery.overlay import Route

LAN = [ipaddress.ip_network("192.168.1.0/24")]


def fake_sys(tmp_path: Path, name: str, *, type_: int = 1, uevent: str = "") -> Path:
    d = tmp_path / name
    d.mkdir(parents=True)
    (d / "type").write_text(f"{type_}\n")
    (d / "uevent").write_text(f"INTERFACE={name}\n{uevent}")
    return tmp_path


def test_a_kernel_wireguard_device_is_recognised_by_its_devtype(tmp_path: Path) -> None:
    sys_net = fake_sys(tmp_path, "office", type_=65534, uevent="DEVTYPE=wireguard\n")
    assert overlay.interface_kind("office", sys_net) == "WireGuard interface"


def test_a_tun_device_counts_as_a_tunnel_whatever_its_name(tmp_path: Path) -> None:
    sys_net = fake_sys(tmp_path, "street", type_=65534)  # wireguard-go, tailscaled, yggdrasil
    assert overlay.interface_kind("street", sys_net) == "tunnel interface"


def test_an_ethernet_interface_is_not_an_overlay_unless_named_like_one(tmp_path: Path) -> None:
    sys_net = fake_sys(tmp_path, "eth0")
    fake_sys(tmp_path, "tailscale0")
    assert overlay.interface_kind("eth0", sys_net) is None
    assert overlay.interface_kind("tailscale0", sys_net) == "overlay-named interface"
    assert overlay.interface_kind("../etc", sys_net) is None


@pytest.mark.parametrize("host, want", [("100.101.102.103", "Tailscale range"), ("fd7a:115c:a1e0::1", "Tailscale range"),
                                        ("200:1234::1", "Yggdrasil range"), ("300:abcd::1", "Yggdrasil range"),
                                        ("192.168.1.5", None), ("100.63.0.1", None), ("not-an-ip", None)])
def test_overlay_address_ranges(host: str, want: str | None) -> None:
    assert overlay.address_range(host) == want


def test_a_peer_with_an_endpoint_on_our_lan_is_not_overlay_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(overlay, "route_to", lambda host, port=7080: Route(host, "wg0", "WireGuard interface"))
    both = {"host": "10.99.0.3", "port": 7080, "endpoints": [{"host": "192.168.1.7"}, {"host": "10.99.0.3"}]}
    only = {"host": "10.99.0.3", "port": 7080, "endpoints": [{"host": "10.232.0.3"}, {"host": "10.99.0.3"}]}
    assert overlay.overlay_only(both, LAN) is None
    assert overlay.overlay_only(only, LAN) == Route("10.99.0.3", "wg0", "WireGuard interface")


def test_a_peer_reached_over_the_lan_is_not_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(overlay, "route_to", lambda host, port=7080: Route(host, "eth0", None))
    assert overlay.overlay_peers([{"host": "192.168.1.7", "port": 7080, "endpoints": []}], [], LAN) == []


def test_overlay_peers_say_whether_the_cache_keeps_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(overlay, "route_to", lambda host, port=7080: Route(host, "wg0", "WireGuard interface"))
    peers = [{"host": "10.99.0.3", "port": 7080, "display_name": "bob", "endpoints": [{"host": "10.99.0.3"}]},
             {"host": "10.99.0.4", "port": 7080, "display_name": "carol", "endpoints": []}]
    bob, carol = overlay.overlay_peers(peers, [("10.99.0.3", 7080)], LAN)
    assert bob.kept and bob.sentence() == ("bob is reached over wg0 only (WireGuard interface); mDNS/UDP discovery "
                                           "cannot see it, it is kept in the peer cache as a manual peer")
    assert not carol.kept and "not a manual peer" in carol.sentence()
    assert carol.address == "10.99.0.4:7080"


def test_route_to_a_loopback_address_is_no_overlay() -> None:
    route = overlay.route_to("127.0.0.1")  # connect() on UDP sends nothing
    assert route.interface is not None and not route.is_overlay


def _ctx(tmp_path: Path, peers: list[dict[str, Any]]) -> Any:
    cfg = SimpleNamespace(paths=SimpleNamespace(data_dir=tmp_path))
    api = SimpleNamespace(output=lambda cap, inp: {"peers": peers})
    return SimpleNamespace(cfg=cfg, api=api, node_running=lambda: True)


def test_doctor_check_warns_about_an_overlay_peer_that_is_not_kept(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(overlay, "route_to", lambda host, port=7080: Route(host, "wg0", "WireGuard interface"))
    monkeypatch.setattr(overlay, "local_lan_networks", lambda: LAN)
    peers = [{"host": "10.99.0.3", "port": 7080, "display_name": "bob", "endpoints": []}]
    result = doctor.check_overlay_peers(_ctx(tmp_path, peers))
    assert result.status == "warn" and "bob is reached over wg0 only" in result.detail
    assert result.fix and "hearthnet peer add 10.99.0.3:7080" in result.fix
    PeerCache.for_data_dir(tmp_path).add_manual("10.99.0.3", 7080)
    kept = doctor.check_overlay_peers(_ctx(tmp_path, peers))
    assert kept.status == "ok" and "kept in the peer cache as a manual peer" in kept.detail


def test_doctor_check_with_no_overlay_peer(tmp_path: Path) -> None:
    result = doctor.check_overlay_peers(_ctx(tmp_path, []))
    assert result.status == "ok" and result.detail == "no peer is reached over an overlay only"


def test_doctor_check_is_skipped_when_discovery_gives_no_peer_list(tmp_path: Path) -> None:
    from hearthnet.errors import HearthNetError

    def refuse(cap: str, inp: Any) -> Any:
        raise HearthNetError("not_found", "no worker serves community.peers.list")

    ctx = _ctx(tmp_path, [])
    ctx.api = SimpleNamespace(output=refuse)
    result = doctor.check_overlay_peers(ctx)
    assert result.status == "skipped" and "no peer list from discovery" in result.detail


def test_an_ipv6_only_overlay_interface_is_not_reported_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from hearthnet.discovery import interfaces

    adapters = [SimpleNamespace(name="ygg0", ips=[SimpleNamespace(ip=("200:1234::1", 0, 0), network_prefix=7)]),
                SimpleNamespace(name="eth1", ips=[SimpleNamespace(ip=("2001:db8::5", 0, 0), network_prefix=64)]),
                SimpleNamespace(name="eth0", ips=[SimpleNamespace(ip="192.168.1.5", network_prefix=24)])]
    monkeypatch.setattr(interfaces.ifaddr, "get_adapters", lambda: adapters)
    monkeypatch.setattr(overlay, "interface_kind", lambda name, sys_net=None: "tunnel interface" if name == "ygg0" else None)
    sel = interfaces.select(["eth0", "ygg0", "eth1"])
    assert [a.name for a in sel.addrs] == ["eth0"]
    assert sel.missing == ("eth1",)  # a LAN without IPv4 yet is still worth a warning
