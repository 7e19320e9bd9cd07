"""Two streets over WireGuard (hearthnet/testing/overlay_lab.py): street A holds node1 and
node2 on one bridge, street B node3 on another; the streets are not routed to each other,
only node1 and node3 share a WireGuard tunnel (wireguard-go, keys from `wg genkey`) over a
private veth link. Nodes advertise their overlay address (`discovery.interfaces` includes
the wg interface), the routers `peer add` each other's overlay address, and then:

* a market post on node2 (street A, no tunnel) appears on node3, and one on node3 on node2;
* `doctor --check overlay_peers` on node3 explains that node1 is reached over wg3 only and
  kept in the peer cache as a manual peer (and node1 says the same of node3, not of node2);
* after a restart node3 finds node1 again from its peer cache, without a new `peer add`.

Needs root, wireguard-go and wg (scripts/test installs them); every namespace,
wireguard-go process and node is removed at the end, also when the test fails.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

from hearthnet.discovery.cache import PeerCache
from hearthnet.testing.netns import LabNode, forget_peers, form_community
from hearthnet.testing.overlay_lab import OverlayLab, overlay_unavailable_reason, wg_name
from hearthnet.testing.nodes import unwrap
from hearthnet.testing.waiting import wait_for

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(bool(overlay_unavailable_reason()), reason=overlay_unavailable_reason() or "")]

LIGHT = {"HEARTHNET_EMBEDDING_ENABLED": "false"}  # two cores: no embedding model in this test
CORE = ("broker", "gateway", "ledger", "discovery", "market")


@pytest.fixture(scope="module")
def streets() -> Iterator[tuple[OverlayLab, dict[int, LabNode], dict[int, str]]]:
    lab = OverlayLab("hnwg")
    try:
        lab.build()
        nodes = {k: lab.overlay_node(k) for k in lab.ks}
        for node in nodes.values():
            node.env.update(LIGHT)
        ids = form_community(lab)  # node3 redeems its invite over the tunnel: node1's wg1 address
        for node in nodes.values():
            forget_peers(node)  # what follows is discovery + `peer add`, not what the join left
        for node in nodes.values():
            node.start(wait_workers=CORE)
        yield lab, nodes, ids
    finally:
        lab.cleanup()


def _titles(node: LabNode) -> set[str]:
    try:
        out = node.capability("market.list", {"status": "all", "limit": 500})
    except Exception:  # noqa: BLE001 - not up yet: nothing listed
        return set()
    return {p.get("title") for p in out.get("posts") or []}


def _post(node: LabNode, title: str) -> None:
    node.cli_json("market", "post", "--category", "offer", "--title", title, "--body", "over the overlay")


def _check(node: LabNode, name: str) -> dict[str, Any]:
    r = node.cli("doctor", "--check", name, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = unwrap(json.loads(r.stdout))
    return next(c for c in doc["checks"] if c["name"] == name)


CONNECT = ("import socket, sys\n"
           "try:\n    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close(); print('open')\n"
           "except OSError as e:\n    print(type(e).__name__)")


def test_streets_are_joined_only_by_the_tunnel(streets) -> None:
    lab, nodes, _ = streets
    port = str(nodes[1].port)
    reach = lambda k, host: lab.exec(k, nodes[k].python, "-c", CONNECT, host, port).strip()  # noqa: E731
    assert reach(3, lab.addr(1)) != "open"  # street A's LAN address: no route from street B
    assert reach(3, lab.overlay_addr(1)) == "open"  # the same node over WireGuard
    assert reach(2, lab.overlay_addr(3)) != "open"  # node2 has no tunnel (and nothing is forwarded)
    assert lab.exec(3, "cat", f"/sys/class/net/{wg_name(3)}/type").strip() == "65534"  # a TUN device


def test_overlay_peers_sync_both_ways(streets) -> None:
    lab, nodes, ids = streets
    n1, n2, n3 = nodes[1], nodes[2], nodes[3]
    added = n3.cli_json("peer", "add", f"{lab.overlay_addr(1)}:{n1.port}")
    assert added["address"] == f"{lab.overlay_addr(1)}:{n1.port}"
    n1.cli_json("peer", "add", f"{lab.overlay_addr(3)}:{n3.port}")
    wait_for(lambda: {p.get("node_id_full") for p in (n3.peers_or_none() or {}).get("peers", [])} == {ids[1]},
             90, interval=0.5, message="node3 lists node1 (over the tunnel)")
    wait_for(lambda: {p.get("node_id_full") for p in (n1.peers_or_none() or {}).get("peers", [])} == {ids[2], ids[3]},
             90, interval=0.5, message="node1 lists node2 (street A) and node3 (tunnel)")
    over = next(p for p in n3.peer_list()["peers"] if p["node_id_full"] == ids[1])
    assert over["host"] == lab.overlay_addr(1)
    assert lab.overlay_addr(1) in {e["host"] for e in over["endpoints"]}  # advertised in its manifest
    _post(n2, "ladder from street A")
    wait_for(lambda: "ladder from street A" in _titles(n3), 60, message="street A's post reaches street B")
    _post(n3, "drill from street B")
    wait_for(lambda: "drill from street B" in _titles(n2), 60, message="street B's post reaches street A")


def test_doctor_explains_the_overlay_only_peer(streets) -> None:
    lab, nodes, _ = streets
    on3 = _check(nodes[3], "overlay_peers")
    assert on3["status"] == "ok", on3
    assert f"node1 is reached over {wg_name(3)} only" in on3["detail"]
    assert "kept in the peer cache as a manual peer" in on3["detail"]
    on1 = _check(nodes[1], "overlay_peers")
    assert f"node3 is reached over {wg_name(1)} only" in on1["detail"] and "node2" not in on1["detail"], on1
    on2 = _check(nodes[2], "overlay_peers")
    assert on2["status"] == "ok" and "no peer is reached over an overlay only" in on2["detail"], on2


def test_peer_cache_brings_the_overlay_peer_back_after_a_restart(streets) -> None:
    lab, nodes, ids = streets
    n3 = nodes[3]
    cached = PeerCache.for_data_dir(n3.root / "data" / "hearthnet").load()
    assert [(e.host, e.manual, e.node_id) for e in cached if e.host == lab.overlay_addr(1)] == [
        (lab.overlay_addr(1), True, ids[1])]
    n3.stop()
    n3.start(wait_workers=CORE)
    wait_for(lambda: ids[1] in {p.get("node_id_full") for p in (n3.peers_or_none() or {}).get("peers", [])},
             90, 0.5, message="node3 finds node1 again from its peer cache")
    again = next(p for p in n3.peer_list()["peers"] if p["node_id_full"] == ids[1])
    assert (again["host"], again["source"]) == (lab.overlay_addr(1), "manual")  # the cache's manual entry
    _post(n3, "saw after the restart")
    wait_for(lambda: "saw after the restart" in _titles(nodes[2]), 60, message="street B's post reaches street A")
