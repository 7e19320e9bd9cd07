"""AlertService on a real event log: sending (CAP defaults, bad input refused before
anything is signed, only trusted/anchor members), Update/Cancel by prefix, acknowledging
(latest wins), listing with the roll-up, pushing to online peers through alert.deliver,
and what alert.deliver refuses; the capabilities' trust levels."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from hearthnet.errors import HearthNetError
from hearthnet.services.alerts.view import ACKED, ISSUED


def code_of(fn, *args, **kw) -> tuple[str, str]:
    with pytest.raises(HearthNetError) as exc:
        fn(*args, **kw)
    return exc.value.code, exc.value.message


def alert_events(community, kind=ISSUED):
    return community.log.events(0, None, [kind])


def test_trust_levels():
    from hearthnet.services.alerts.service import AlertService

    trust = {c.name: c.trust_required for c in AlertService(None, "ed25519:x").capabilities()}
    assert trust == {"alert.send": "self", "alert.list": "self", "alert.ack": "self", "alert.deliver": "member"}


def test_send_with_defaults_and_list(anchor, community):
    out = anchor.send()
    [ev] = alert_events(community)
    assert ev["event_id"] == out["event_id"] and out["pushed"] == [] and out["identifier"].startswith("hearthnet-")
    d = ev["data"]
    assert (d["severity"], d["urgency"], d["certainty"], d["status"], d["msg_type"], d["references"]) == \
        ("Severe", "Immediate", "Likely", "Actual", "Alert", [])
    expires = datetime.fromisoformat(d["expires"].replace("Z", "+00:00"))
    sent = datetime.fromisoformat(ev["wall_clock"].replace("Z", "+00:00"))
    assert abs((expires - sent) - timedelta(hours=6)) <= timedelta(seconds=2)
    [a] = anchor.alerts()
    assert a["event_id"] == out["event_id"] and a["sender"] == anchor.node_id and a["active"]
    assert a["sender_name"] is not None and a["my_ack"] is None and a["rollup"]["not_heard"] == []


@pytest.mark.parametrize("inp, words", [
    ({"headline": ""}, "headline is required"),
    ({"headline": "   "}, "headline is required"),
    ({"description": "x"}, "headline is required"),
    ({"headline": "x" * 161}, "limit is 160"),
    ({"headline": "h", "severity": "Catastrophic"}, "severity must be one of"),
    ({"headline": "h", "status": "Real"}, "status must be one of"),
    ({"headline": "h", "expires_in_seconds": 0}, "expires_in_seconds"),
    ({"headline": "h", "expires_in_seconds": 7 * 86400 + 1}, "expires_in_seconds"),
    ({"headline": "h", "expires_in_seconds": True}, "expires_in_seconds"),
    ({"headline": "h", "msg_type": "Update"}, "references"),
    ({"headline": "h", "references": ["01ABCDEF"]}, "references"),
    ({"headline": "h", "description": 5}, "description must be a string"),
])
def test_bad_input_is_refused_and_nothing_is_signed(anchor, community, inp, words):
    code, message = code_of(anchor.call, "alert.send", inp)
    assert code == "bad_request" and words in message
    assert alert_events(community) == []


def test_a_plain_member_is_refused_by_the_ledger_with_its_reason(community, make_alerts):
    bob = make_alerts(community.add_member("bob", "member"))
    code, message = code_of(bob.send)
    assert code == "unauthorized" and "only a trusted or anchor member may issue" in message
    assert alert_events(community) == []
    carol = make_alerts(community.add_member("carol", "trusted"))
    assert carol.send(status="Exercise")["event_id"] in {e["event_id"] for e in alert_events(community)}


def test_update_and_cancel_by_prefix(anchor):
    first = anchor.send()["event_id"]
    update = anchor.send(msg_type="Update", references=[first[:10]], headline="Water rising")["event_id"]
    by_id = {a["event_id"]: a for a in anchor.alerts()}
    assert by_id[update]["references"] == [first] and by_id[first]["superseded_by"] == update
    assert [a["event_id"] for a in anchor.alerts(active_only=True)] == [update]
    anchor.send(msg_type="Cancel", references=[update], headline="All clear")
    assert anchor.alerts(active_only=True) == []
    code, _ = code_of(anchor.send, msg_type="Update", references=["01ZZZZZZZZ"])
    assert code == "not_found"


def test_ack_latest_wins_and_rollup_over_members(anchor, community, make_alerts):
    bob = make_alerts(community.add_member("bob", "member"))
    carol_kp = community.add_member("carol", "member")
    eid = anchor.send()["event_id"]
    bob.catch_up()
    bob.call("alert.ack", {"event_id": eid[:8], "status": "need_help", "note": "no power"})
    bob.call("alert.ack", {"event_id": eid, "status": "ok"})
    assert len(alert_events(community, ACKED)) == 2
    anchor.catch_up()
    [a] = anchor.alerts(event_id=eid[:12])
    r = a["rollup"]
    assert [e["node_id"] for e in r["ok"]] == [bob.node_id] and r["need_help"] == []
    assert [e["node_id"] for e in r["not_heard"]] == [carol_kp.node_id_full]  # not the sender
    assert bob.alerts()[0]["my_ack"]["status"] == "ok"


@pytest.mark.parametrize("inp, code", [
    ({"status": "ok"}, "bad_request"),
    ({"event_id": "01ZZZZZZZZ", "status": "ok"}, "not_found"),
    ({"event_id": "{eid}", "status": "fine"}, "bad_request"),
    ({"event_id": "{eid}", "status": "ok", "note": "x" * 1025}, "bad_request"),
])
def test_bad_acks(anchor, community, inp, code):
    eid = anchor.send()["event_id"]
    inp = {k: (v.format(eid=eid) if isinstance(v, str) else v) for k, v in inp.items()}
    assert code_of(anchor.call, "alert.ack", inp)[0] == code
    assert alert_events(community, ACKED) == []


def test_list_bad_input_and_prefix(anchor):
    anchor.send()
    assert code_of(anchor.call, "alert.list", {"active_only": "yes"})[0] == "bad_request"
    assert code_of(anchor.call, "alert.list", {"event_id": 5})[0] == "bad_request"
    assert code_of(anchor.call, "alert.list", {"event_id": "01ZZZZZZZZ"})[0] == "not_found"


def test_members_from_the_membership_view_when_governance_is_away(anchor, community):
    community.add_member("bob", "member")
    anchor.send()
    anchor.bus.members_fail = True
    anchor.svc.membership = None
    assert anchor.alerts()[0]["rollup"]["not_heard"] == []  # nothing known: nobody listed, no error


def test_push_to_online_peers(anchor, community, make_alerts):
    bob = make_alerts(community.add_member("bob", "member"))
    anchor.bus.peers = {bob.node_id: bob.svc, "ed25519:gone": None}
    out = anchor.send()
    assert out["pushed"] == [bob.node_id]  # the gone peer answers no provider: gossip carries it


def test_deliver_takes_only_alert_events_authored_by_the_caller(anchor, community, make_alerts):
    bob_kp = community.add_member("bob", "member")
    eid = anchor.send()["event_id"]
    ack = community.event(bob_kp, ACKED, {"target_event_id": eid, "status": "ok", "note": ""})
    assert code_of(anchor.call, "alert.deliver", {"event": ack}, caller=anchor.node_id)[0] == "unauthorized"
    assert code_of(anchor.call, "alert.deliver", {"event": {"event_type": "chat.message.sent"}},
                   caller=bob_kp.node_id_full)[0] == "bad_request"
    assert anchor.call("alert.deliver", {"event": ack}, caller=bob_kp.node_id_full)["output"] == \
        {"stored": True, "reason": None}
    forged = community.event(bob_kp, ISSUED, {
        "identifier": "x", "status": "Actual", "msg_type": "Alert", "urgency": "Immediate", "severity": "Extreme",
        "certainty": "Observed", "headline": "Fake", "description": "", "instruction": "", "area": "",
        "expires": "2099-01-01T00:00:00Z", "references": []})
    out = anchor.call("alert.deliver", {"event": forged}, caller=bob_kp.node_id_full)["output"]
    assert out["stored"] is False and "only a trusted or anchor member" in out["reason"]
