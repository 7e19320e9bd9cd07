"""Interface selection and the pure mDNS pieces (names, TXT, browser filtering)."""
from __future__ import annotations

from typing import Any

from hearthnet.discovery.interfaces import InterfaceAddr, advertised, best_host, select
from hearthnet.discovery.mdns import (
    CAPS_MAX_BYTES,
    MdnsBrowser,
    build_txt,
    instance_name,
    parse_txt,
    truncate_caps,
)

LO = InterfaceAddr("lo", "127.0.0.1", 8)
ETH = InterfaceAddr("eth0", "192.168.1.10", 24)
WLAN = InterfaceAddr("wlan0", "10.1.0.7", 16)
ALL = [LO, ETH, WLAN]
NODE = "ed25519:ABCD-EFGH-IJKL-MNOP"
OTHER = "ed25519:QRST-UVWX-YZ23-4567"
COMMUNITY = "ed25519:AAAA-BBBB-CCCC-DDDD"
FOREIGN = "ed25519:ZZZZ-YYYY-XXXX-WWWW"


def test_empty_list_means_every_interface():
    sel = select((), ALL)
    assert sel.addrs == tuple(ALL) and not sel.strict and sel.missing == ()


def test_named_interfaces_are_strict():
    sel = select(("wlan0", "veth9"), ALL)
    assert sel.addrs == (WLAN,) and sel.strict and sel.missing == ("veth9",)
    nothing = select(("veth9",), ALL)
    assert nothing.addrs == () and nothing.strict  # never falls back to all
    assert select(("192.168.1.10",), ALL).addrs == (ETH,)


def test_advertised_and_best_host():
    assert advertised(select((), ALL)) == ["192.168.1.10", "10.1.0.7"]
    assert advertised(select(("lo",), ALL)) == ["127.0.0.1"]
    sel = select(("wlan0",), ALL)
    assert best_host(["192.168.1.20", "10.1.3.3"], sel) == "10.1.3.3"
    assert best_host(["172.16.0.1"], sel) == "172.16.0.1"
    assert best_host([], sel) is None


def test_instance_name_is_one_safe_label():
    assert instance_name("Kitchen", NODE) == "Kitchen-ABCD"
    assert instance_name("a.b\nc", NODE) == "a-b-c-ABCD"
    assert instance_name("   ", NODE) == "hearthnet-ABCD"
    long = instance_name("ü" * 100, NODE)
    assert len(long.encode()) <= 63 and long.endswith("-ABCD")


def test_txt_keys_and_caps_truncation():
    caps = [f"capability{i:02d}.name" for i in range(30)]
    txt = build_txt(node_id_short=NODE, community_id_short=COMMUNITY, profile="hearth", caps=caps,
                    manifest_url="https://10.0.0.2:7080/manifest")
    assert set(txt) == {"v", "node", "community", "profile", "caps", "manifest_url", "contract_version"}
    assert txt["v"] == "1" and txt["contract_version"] == "1.0"
    assert len(txt["caps"].encode()) <= CAPS_MAX_BYTES
    assert txt["caps"].split(",") == caps[: len(txt["caps"].split(","))]  # whole names only
    assert truncate_caps(["a", "b"]) == "a,b" and truncate_caps([]) == ""
    assert parse_txt({b"v": b"1", b"x": None, b"bad": b"\xff"}) == {"v": "1", "x": ""}


def _browser(selection=None) -> tuple[MdnsBrowser, list[Any], list[Any]]:
    ours: list[Any] = []
    foreign: list[Any] = []
    browser = MdnsBrowser(None, our_node_short=NODE, our_community_short=COMMUNITY,  # type: ignore[arg-type]
                          selection=selection or select(("eth0",), ALL),
                          on_service=lambda *a: ours.append(a), on_foreign=lambda *a: foreign.append(a))
    return browser, ours, foreign


def _txt(node: str, community: str) -> dict[str, str]:
    return {"v": "1", "node": node, "community": community, "profile": "hearth", "caps": ""}


def test_browser_filters_by_community_and_ignores_itself():
    browser, ours, foreign = _browser()
    browser.handle_info(_txt(NODE, COMMUNITY), ["192.168.1.10"], 7080, False)
    browser.handle_info(_txt(OTHER, COMMUNITY), ["10.9.9.9", "192.168.1.11"], 7081, True)
    browser.handle_info(_txt(OTHER.replace("Q", "R"), FOREIGN), ["192.168.1.12"], 7080, False)
    browser.handle_info({**_txt(OTHER, COMMUNITY), "v": "2"}, ["192.168.1.13"], 7080, False)
    browser.handle_info(_txt(OTHER, COMMUNITY), [], 7080, False)
    assert [(h, p, changed) for h, p, _, changed in ours] == [("192.168.1.11", 7081, True)]
    assert foreign == [(OTHER.replace("Q", "R"), FOREIGN, "192.168.1.12")]
    assert (browser.stats.own, browser.stats.ours, browser.stats.foreign, browser.stats.bad_txt) == (1, 1, 1, 2)


def test_announcer_txt_update_only_when_caps_change():
    import asyncio

    from hearthnet.discovery.mdns import MdnsAnnouncer

    async def scenario() -> None:
        ann = MdnsAnnouncer(None, node_id_short=NODE, display_name="Kitchen",  # type: ignore[arg-type]
                            community_id_short=COMMUNITY, profile="hearth", port=7080, caps=["llm.chat"],
                            addresses=["192.168.1.10"])
        assert ann.info.name == "Kitchen-ABCD._hearthnet._tcp.local."
        assert ann.txt["manifest_url"] == "https://192.168.1.10:7080/manifest" and ann.txt["caps"] == "llm.chat"
        assert await ann.update(["llm.chat"]) is False  # not registered: nothing is sent either way
        assert await ann.update(["llm.chat", "rag.query"]) is True
        assert ann.txt["caps"] == "llm.chat,rag.query"

    asyncio.run(scenario())
