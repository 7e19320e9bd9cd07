"""Signed emergency alerts between three real nodes (issue 10 point 3): A founds (anchor),
B and C join by invite as plain members, `peer add` between them (single host, discovery
multicast off).

An Exercise alert from A is pushed at once to B and C and marked EXERCISE everywhere; C
is stopped, A sends a real alert (pushed to B only), B acknowledges ok; C comes back, gets
the alert by sync, acknowledges need_help (the alert and B's acknowledgement reach an SSE
subscriber on B); the roll-up converges on every node to
{ok: B, need_help: C, not_heard: []}. An alert by plain member B is refused by B's own
ledger (exit 4, with the reason), and one forged with B's key and offered to A's
`community.log.ingest` is refused with the reason."""
from __future__ import annotations

from typing import Any

import pytest

from hearthnet.ledger.events import build_event
from hearthnet.testing.live import Feed
from hearthnet.testing.nodes import Node, key_of, start_three
from hearthnet.testing.waiting import wait_for

pytestmark = pytest.mark.integration

WORKERS = ("broker", "gateway", "ledger", "discovery", "governance", "alerts")


def output(node: Node, cap: str, inp: dict[str, Any]) -> dict[str, Any]:
    status, doc = node.call(cap, {"params": {}, "input": inp})
    assert status == 200, (cap, doc)
    return doc["output"]


def alerts_on(node: Node) -> dict[str, dict[str, Any]]:
    try:
        return {a["event_id"]: a for a in output(node, "alert.list", {})["alerts"]}
    except (OSError, ValueError, AssertionError):
        return {}


def serves(node: Node, cap: str, other_id: str) -> bool:
    try:
        caps = node.api("/api/v1/capabilities")["capabilities"]
    except (OSError, ValueError):
        return False
    return any(c["name"] == cap and not c["local"] and c["node_id"] == other_id for c in caps)


def summary(rollup: dict[str, Any]) -> dict[str, list[str]]:
    return {k: [e["node_id"] for e in v] for k, v in rollup.items()}


@pytest.fixture
def mesh(make_node):
    return start_three(make_node, WORKERS)


def test_alerts_pushed_acknowledged_and_rolled_up_across_nodes(mesh):
    a, b, c, ids = mesh
    A, B, C = ids["alice"], ids["bob"], ids["carol"]
    for other in (B, C):
        wait_for(lambda other=other: serves(a, "alert.deliver", other), 60,
                 message="alice can reach the others' alert.deliver")

    # --- an exercise, everyone online: pushed to both at once, marked everywhere
    drill = a.cli_json("alert", "send", "--headline", "Evacuation drill", "--exercise", "--area", "Maple St",
                       "--instruction", "Meet at the school")
    assert set(drill) == {"event_id", "lamport", "identifier", "pushed"}
    assert sorted(drill["pushed"]) == sorted([B, C]), drill
    for n in (b, c):  # pushed: stored in n's log during the send (its worker sees it a moment later)
        wait_for(lambda n=n: drill["event_id"] in alerts_on(n), 10, message=f"the drill on {n.name}")
        listed = n.cli_json("alert", "ls")
        [x] = [x for x in listed["alerts"] if x["event_id"] == drill["event_id"]]
        assert x["exercise"] is True and x["status"] == "Exercise" and x["sender"] == A
        assert x["sender_name"] == "alice" and x["area"] == "Maple St"
        human = n.cli("alert", "ls")
        assert human.returncode == 0 and "EXERCISE" in human.stdout, human.stdout
        assert "NOT A REAL EMERGENCY" in n.cli("alert", "show", drill["event_id"][:10]).stdout

    # --- carol is away; a real alert reaches bob at once, bob is fine (and his UI live)
    feed = Feed(b, ["emergency.alert.issued", "emergency.alert.acknowledged"])
    try:
        assert feed.status == 200 and feed.next().event == "subscribed"
        live_part(a, b, c, feed, A, B, C)
    finally:
        feed.close()


def live_part(a: Node, b: Node, c: Node, feed: Feed, A: str, B: str, C: str) -> None:
    c.stop()
    sent = a.cli_json("alert", "send", "--headline", "River flooding", "--severity", "Extreme",
                      "--description", "The Rhine is over the dyke", "--expires", "2h")
    eid = sent["event_id"]
    assert B in sent["pushed"] and C not in sent["pushed"], sent
    wait_for(lambda: eid in alerts_on(b), 10, message="the alert on bob")
    ack_b = b.cli_json("alert", "ack", eid[:12], "--status", "ok", "--note", "all well at 12")
    assert set(ack_b) == {"event_id", "lamport", "pushed"} and A in ack_b["pushed"]
    got = feed.take(2)
    assert [(f.event, f.data["event_id"]) for f in got] == [("emergency.alert.issued", eid),
                                                            ("emergency.alert.acknowledged", ack_b["event_id"])]
    wait_for(lambda: summary(alerts_on(a)[eid]["rollup"])["ok"] == [B], 10, message="bob's ack on alice")
    shown = a.cli_json("alert", "show", eid)["alert"]
    assert summary(shown["rollup"]) == {"ok": [B], "need_help": [], "other": [], "not_heard": [C]}
    assert shown["active"] and not shown["exercise"] and shown["severity"] == "Extreme"

    # --- carol returns, gets the alert by sync or push, needs help
    c.start(wait_workers=WORKERS)
    wait_for(lambda: eid in alerts_on(c), 60, message="carol got the alert after coming back")
    c.cli_json("alert", "ack", eid, "--status", "need_help", "--note", "cellar flooded")
    want = {"ok": [B], "need_help": [C], "other": [], "not_heard": []}
    for n in (a, b, c):
        wait_for(lambda n=n: summary(alerts_on(n).get(eid, {}).get("rollup", {})) == want, 60,
                 message=f"the roll-up on {n.name}")
    mine = c.cli_json("alert", "show", eid[:8])["alert"]["my_ack"]
    assert mine["status"] == "need_help" and mine["note"] == "cellar flooded"
    assert "everyone answered" in a.cli("alert", "show", eid).stdout

    # --- bad input: nothing sent
    bad = a.cli("alert", "send", "--json")
    assert bad.returncode == 2 and "bad_request" in bad.stdout
    # --- a plain member may not issue: its own ledger refuses, with the reason
    refused = b.cli("alert", "send", "--headline", "Fake alarm", "--json")
    assert refused.returncode == 4 and "only a trusted or anchor member" in refused.stdout, refused.stdout
    # --- a forged alert signed with bob's key, offered to alice's ledger
    held = output(a, "community.log.events", {"ids": [eid]})["events"][0]
    forged = build_event(key_of(b), held["community_id"], held["lamport"] + 5, "emergency.alert.issued", {
        "identifier": "forged-1", "status": "Actual", "msg_type": "Alert", "urgency": "Immediate",
        "severity": "Extreme", "certainty": "Observed", "headline": "Fake", "description": "", "instruction": "",
        "area": "", "expires": "2099-01-01T00:00:00Z", "references": []})
    res = output(a, "community.log.ingest", {"events": [forged]})
    assert res["accepted"] == 0 and res["rejected_reasons"][0]["reason"] == "unauthorized", res
    assert "trusted or anchor" in res["rejected_reasons"][0]["detail"]
    assert forged["event_id"] not in alerts_on(a)
    # --- the newest active alert first; the drill is still in force too
    assert [x["event_id"] for x in output(b, "alert.list", {"active_only": True})["alerts"]][0] == eid
