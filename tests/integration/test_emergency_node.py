"""The emergency worker in one real node (its probes point at nothing outside: no
targets, so the node is online): `emergency.status` through the local API, the local SSE
topic emergency.mode, `status` and the new doctor checks."""
from __future__ import annotations

import json

import pytest

from hearthnet.testing.live import Feed
from hearthnet.testing.nodes import Node

pytestmark = pytest.mark.integration
CORE = ("broker", "gateway", "ledger", "emergency")


@pytest.fixture
def node(make_node) -> Node:
    a = make_node("alice")
    a.init()
    a.start(wait_workers=CORE)
    return a


def test_status_capability_topic_and_doctor(node: Node) -> None:
    code, out = node.call("emergency.status", {"params": {}, "input": {}})
    assert code == 200, out
    assert out["output"]["mode"] == "online" and out["output"]["probes"] == []
    assert out["output"]["effects"]["sync_interval_seconds"] == 300

    feed = Feed(node, ["emergency.mode", "community.event"])
    try:
        assert feed.status == 200
        frames = [feed.next(), feed.next()]
        assert frames[0].event == "subscribed"
        mode = frames[1]
        assert mode.event == "emergency.mode" and mode.id is None
        assert mode.data["mode"] == "online" and mode.data["online"] is True and mode.data["since"]
    finally:
        feed.close()

    doc = json.loads(node.cli("status", "--json").stdout)
    assert doc["emergency"]["mode"] == "online"
    r = node.cli("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    for name in ("clock_sanity", "mdns_socket", "udp_multicast"):
        assert name in checks, r.stdout
    # single-host test nodes: discovery off (nothing joined), no peers (clock not compared)
    assert checks["mdns_socket"]["status"] == checks["udp_multicast"]["status"] == "skipped"
    assert checks["clock_sanity"]["status"] == "skipped"


def test_unknown_topic_error_names_the_local_topic(node: Node) -> None:
    feed = Feed(node, ["emergency.nope"])
    try:
        assert feed.status == 400
    finally:
        feed.close()
