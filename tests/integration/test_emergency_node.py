"""The emergency worker in one real node (its probes point at nothing outside: no
targets, so the node is online): `emergency.status` through the local API, the local SSE
topic emergency.mode, `status` and the new doctor checks. Then a node whose only probe is
https to a local TLS server trusted through `emergency.https_ca_file`: online; a captive
portal taking over the server (a certificate we do not trust) → degraded then offline;
the trusted certificate back → online."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hearthnet.testing.live import Feed
from hearthnet.testing.nodes import Node
from hearthnet.testing.waiting import wait_for
from hearthnet.testing.tlscerts import TlsServer, make_pki

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


# Bounds (not timed assertions), spec cadence: online rounds every 10 s, timeout 2 s,
# debounce 30 s, recovery 10 s of all-pass, rounds every 2 s when not online.
DEGRADED_SECONDS = 10 + 2 + 10
OFFLINE_SECONDS = 30 + 2 + 2 + 15
ONLINE_SECONDS = 2 + 2 + 10 + 2 + 15


def _em(node: Node) -> dict[str, Any]:
    code, out = node.call("emergency.status", {"params": {}, "input": {}})
    assert code == 200, out
    return out["output"]


def test_https_probe_through_a_captive_portal(make_node, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    good = pki.server("good")
    server = TlsServer(*good)
    try:
        a = make_node("tls")
        a.env.update({"HEARTHNET_EMERGENCY_PROBE_TARGETS": f"https:https://localhost:{server.port}/",
                      "HEARTHNET_EMERGENCY_HTTPS_CA_FILE": str(pki.ca_file)})
        a.init()
        a.start(wait_workers=CORE)
        em = wait_for(lambda: (e := _em(a))["probes"] and e, timeout=30, message="the first probe round")
        assert em["mode"] == "online" and em["probes"][0]["ok"], em

        server.use(*pki.server("portal", ("portal.example",), self_signed=True))
        em = wait_for(lambda: (e := _em(a))["mode"] == "degraded" and e, timeout=DEGRADED_SECONDS,
                      interval=0.5, message=lambda: f"degraded: {_em(a)}")
        assert em["probes"][0]["error"].startswith("untrusted certificate"), em
        wait_for(lambda: _em(a)["mode"] == "offline", timeout=OFFLINE_SECONDS, interval=0.5,
                 message=lambda: f"offline: {_em(a)}")
        human = a.cli("status").stdout
        assert "offline" in human and f"failing: https:https://localhost:{server.port}/" in human, human

        server.use(*good)
        em = wait_for(lambda: (e := _em(a))["mode"] == "online" and e, timeout=ONLINE_SECONDS,
                      interval=0.5, message=lambda: f"online again: {_em(a)}")
        assert em["probes"][0]["ok"], em
    finally:
        server.close()
