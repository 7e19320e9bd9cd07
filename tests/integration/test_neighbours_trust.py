"""Who may use a node's market, chat, alerts and emergency capabilities through its peer
port (issues 9 and 10), on a real node: a stranger claiming the community gets nothing; a
current member may read the board and push only its own events that concern this node,
never act as its owner (self-only calls), and a plain member's alert pushed to the node is
refused by its ledger; once revoked, that member gets nothing. The member's signed
requests come from its own key (a node that was invited and joined, never run)."""
from __future__ import annotations

from pathlib import Path

import pytest

from hearthnet.identity.manifest import DEFAULT_POLICY
from hearthnet.ledger.events import build_event
from hearthnet.testing.hostile_peer import HostilePeer, refused
from hearthnet.testing.nodes import join_by_invite, key_of
from hearthnet.testing.peer_abuse import wait_until_member

pytestmark = pytest.mark.integration
WORKERS = ("broker", "gateway", "ledger", "governance", "market", "chat", "alerts", "emergency")


def body(inp: dict) -> dict:
    return {"params": {}, "input": inp}


ALERT = {"identifier": "x", "status": "Actual", "msg_type": "Alert", "urgency": "Immediate", "severity": "Severe",
         "certainty": "Observed", "headline": "fake", "description": "", "instruction": "", "area": "",
         "expires": "2030-01-01T00:00:00Z", "references": []}


def test_strangers_members_and_the_revoked_at_the_neighbour_capabilities(make_node, tmp_path: Path) -> None:
    alice, member = make_node("alice"), make_node("member")
    alice.init()
    alice.start(wait_workers=WORKERS)
    policy = {**DEFAULT_POLICY, "min_signatures_to_revoke": 1}  # alice alone may revoke
    status, reply = alice.call("community.log.append", body({"event_type": "community.policy.updated",
                                                             "data": {"policy": policy}}))
    assert status == 200, reply
    member_id = join_by_invite(alice, member)
    st = alice.api("/api/v1/status")
    alice_id, community = st["node"]["node_id"], st["community"]["community_id"]
    status, reply = alice.call("market.post", body({"client_id": "p1", "category": "offer", "title": "Ladder",
                                                    "body": "free"}))
    assert status == 200, reply
    owner_only = {
        "market.post": body({"client_id": "p2", "category": "offer", "title": "x", "body": "y"}),
        "market.expire": body({"client_id": "e1", "event_id": reply["output"]["event_id"], "reason": "withdrawn"}),
        "chat.send": body({"client_id": "c1", "recipient": member_id, "body": "hi"}),
        "chat.history": body({}), "chat.unread": body({}), "chat.read": body({"peer": member_id}),
        "alert.send": body({"headline": "fake flood"}), "alert.list": body({}),
        "alert.ack": body({"event_id": "01" + "0" * 24, "status": "ok"}),
        "emergency.watch": body({}),
    }
    members_may = {"market.list": body({}), "market.search": body({"query": "ladder"}),
                   "emergency.status": body({})}

    with HostilePeer(tmp_path / "stranger", community) as stranger:
        for cap, b in {**owner_only, **members_may}.items():
            assert refused(lambda: stranger.call(alice_id, alice.port, cap, b)) == "unauthorized", cap
        ev = build_event(stranger.kp, community, 50, "chat.message.sent",
                         {"client_id": "s", "recipient": alice_id, "body": "x", "attachments": []})
        for cap in ("chat.deliver", "alert.deliver"):
            assert refused(lambda: stranger.call(alice_id, alice.port, cap, body({"event": ev}))) == "unauthorized"

    kp = key_of(member)
    with HostilePeer(tmp_path / "as-member", community, kp=kp) as as_member:
        wait_until_member(alice, kp)
        call = lambda cap, b: as_member.call(alice_id, alice.port, cap, b)  # noqa: E731
        # what a member may do works (so the refusals below are the rules, not a dead path)
        assert [p["title"] for p in call("market.list", body({}))["output"]["posts"]] == ["Ladder"]
        assert call("emergency.status", body({}))["output"]["mode"] in ("online", "degraded", "offline")
        for cap, b in owner_only.items():
            assert refused(lambda: call(cap, b)) == "unauthorized", cap
        # a push of someone else's event, or of one not concerning alice: refused before the ledger
        theirs = build_event(kp, community, 60, "chat.message.sent",
                             {"client_id": "m", "recipient": member_id, "body": "x", "attachments": []})
        assert refused(lambda: call("chat.deliver", body({"event": theirs}))) == "bad_request"
        # a plain member's alert, pushed: alice's ledger refuses it (only trusted/anchor issue alerts)
        fake = build_event(kp, community, 61, "emergency.alert.issued", ALERT)
        out = call("alert.deliver", body({"event": fake}))["output"]
        assert out["stored"] is False and "only a trusted or anchor member" in out["reason"]
        status, alerts = alice.call("alert.list", body({}))
        assert status == 200 and alerts["output"]["alerts"] == []

        done = alice.cli_json("member", "revoke", member_id, "--reason", "compromised", "--yes")
        assert done["status"] == "revoked", done
        mine = build_event(kp, community, 62, "chat.message.sent",
                           {"client_id": "r", "recipient": alice_id, "body": "x", "attachments": []})
        for cap, b in {**owner_only, **members_may, "chat.deliver": body({"event": mine}),
                       "alert.deliver": body({"event": fake})}.items():
            assert refused(lambda: call(cap, b)) in ("revoked", "unauthorized"), cap
