"""Three real nodes on one host (separate XDG dirs and ports, discovery multicast off: they
meet by invite + `peer add`): remote LLM calls, events crossing the mesh, a killed node
catching up, and a partition healed by a sync round."""
from __future__ import annotations

import signal

import pytest

from hearthnet.testing.nodes import join_by_invite
from hearthnet.testing.waiting import wait_for

pytestmark = pytest.mark.integration

CHAT = {"params": {}, "input": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8,
                                "stream": False}}


def append(node, cid_hex: str) -> str:
    out = node.api("/bus/v1/call", "POST",
                   {"params": {}, "input": {"event_type": "file.cid.advertised",
                                            "data": {"cid": "blake3:" + cid_hex * 64, "sizes_bytes": 1}}},
                   headers={"X-HearthNet-Capability": "community.log.append"})
    return out["output"]["event"]["event_id"]


def has_event(node, event_id: str) -> bool:
    try:
        out = node.api("/bus/v1/call", "POST", {"params": {}, "input": {"ids": [event_id]}},
                       headers={"X-HearthNet-Capability": "community.log.events"})
    except (OSError, ValueError):
        return False
    return bool(out.get("output", {}).get("events"))


@pytest.fixture
def mesh(make_node, tiny_gguf):
    a, b, c = make_node("alice"), make_node("bob"), make_node("carol")
    a.init()
    a.start(wait_workers=("broker", "gateway", "ledger", "discovery"))
    for newcomer in (b, c):
        join_by_invite(a, newcomer)
    b.add_config(f'[[llm.backends]]\nname = "llama_cpp"\nmodel = "tiny"\nmodel_path = "{tiny_gguf}"\n')
    b.start(wait_workers=("broker", "gateway", "ledger", "discovery", "llm"))
    c.start(wait_workers=("broker", "gateway", "ledger", "discovery"))
    for x, y in ((a, b), (b, a), (a, c), (c, a), (b, c), (c, b)):
        x.peer_add(y)
    ids = {n: n.api("/api/v1/status")["node"]["node_id"] for n in (a, b, c)}
    for n in (a, b, c):
        wait_for(lambda n=n: len(n.peers()) == 2, 30, message=f"{n.name} sees both peers")
    return a, b, c, ids


def test_remote_llm_call_is_served_by_the_peer_and_traced(mesh):
    a, b, c, ids = mesh
    wait_for(lambda: any(cap["name"] == "llm.chat" and not cap["local"] and cap["node_id"] == ids[b]
                         for cap in a.api("/api/v1/capabilities")["capabilities"]),
             30, message="llm.chat from bob in alice's registry")
    status, body = a.call("llm.chat", CHAT)
    assert status == 200, body
    assert body["output"]["message"]["role"] == "assistant"
    trace = a.api("/api/v1/traces?n=1&capability=llm.chat")["traces"][-1]
    assert trace["route"] == f"remote:{ids[b]}" and trace["result"] == "ok"
    caps = a.cli("caps", "--remote-only", "--json")
    assert caps.returncode == 0 and "llm.chat" in caps.stdout


def test_event_on_alice_reaches_carol_and_a_killed_node_catches_up(mesh):
    a, b, c, ids = mesh
    first = append(a, "a")
    wait_for(lambda: has_event(c, first), 30, message="carol holds alice's event")

    # kill carol's whole tree; alice writes meanwhile; carol restarts and catches up
    c.stop(signal.SIGKILL)
    while_down = append(a, "b")
    c.start(wait_workers=("broker", "gateway", "ledger", "discovery"))
    wait_for(lambda: has_event(c, while_down), 30, message="carol caught up after the restart")


def test_partition_heals_in_one_sync_round(mesh):
    a, b, c, ids = mesh
    c.stop()  # a partition: carol is gone while alice and bob write
    on_a, on_b = append(a, "c"), append(b, "d")
    wait_for(lambda: has_event(b, on_a), 30, message="bob holds alice's event")
    c.start(wait_workers=("broker", "gateway", "ledger", "discovery"))
    wait_for(lambda: has_event(c, on_a) and has_event(c, on_b), 30, message="carol holds both events")
    status = c.api("/api/v1/status")
    assert all(p["last_sync"] and p["last_sync"]["ok"] for p in status["peers"] if p["last_sync"])
