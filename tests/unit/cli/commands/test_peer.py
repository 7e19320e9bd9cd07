from __future__ import annotations

import json

from aiohttp import web

from tests.unit.cli.conftest import invoke


def test_peer_add_without_a_running_node_goes_to_the_cache(runner, env):
    result = invoke(runner, "peer", "add", "192.168.1.20:7081")
    assert result.exit_code == 0, result.output
    assert "next start" in result.stdout
    peers = json.loads((env.data / "hearthnet" / "peers.json").read_text())["peers"]
    assert [(p["host"], p["port"], p["manual"]) for p in peers] == [("192.168.1.20", 7081, True)]
    doc = json.loads(invoke(runner, "peer", "add", "192.168.1.20:7081", "--json").stdout)
    assert doc["node_running"] is False and doc["address"] == "192.168.1.20:7081"
    assert len(json.loads((env.data / "hearthnet" / "peers.json").read_text())["peers"]) == 1


def test_peer_add_default_port_and_bad_address(runner, env):
    doc = json.loads(invoke(runner, "peer", "add", "pi.local", "--json").stdout)
    assert doc["address"] == "pi.local:7080"
    bad = invoke(runner, "peer", "add", "not a host:x", "--json")
    assert bad.exit_code == 2 and json.loads(bad.stdout)["error"]["code"] == "bad_request"


def test_peer_add_asks_the_running_node(runner, gateway):
    async def on_call(request, body):
        return web.json_response({"output": {"added": "10.0.0.5:7080", "entry": {"host": "10.0.0.5", "port": 7080}},
                                  "meta": {}})

    gateway.on_call = on_call
    result = invoke(runner, "peer", "add", "10.0.0.5", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["node_running"] is True and doc["entry"] == {"host": "10.0.0.5", "port": 7080}
    req = gateway.requests[-1]
    assert req["headers"]["X-HearthNet-Capability"] == "community.peers.add"
    assert req["body"]["input"] == {"address": "10.0.0.5:7080"}
