"""AlertView: supersession and cancellation whatever the arrival order, the latest
acknowledgement per member, the roll-up with the not-heard-from list, expiry, the
exercise flag, prefixes."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hearthnet.services.alerts.view import ACKED, ISSUED, AlertView

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
A, B, C, D = "ed25519:aaa", "ed25519:bbb", "ed25519:ccc", "ed25519:ddd"


def alert(eid: str, lamport: int, msg_type: str = "Alert", refs: tuple[str, ...] = (), status: str = "Actual",
          expires: datetime = NOW + timedelta(hours=6), author: str = A) -> dict:
    return {"event_id": eid, "lamport": lamport, "author": author, "wall_clock": "2026-12-01T11:00:00Z",
            "event_type": ISSUED,
            "data": {"identifier": f"id-{eid}", "status": status, "msg_type": msg_type, "urgency": "Immediate",
                     "severity": "Severe", "certainty": "Likely", "headline": f"h {eid}", "description": "",
                     "instruction": "", "area": "", "references": list(refs),
                     "expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}}


def ack(eid: str, lamport: int, author: str, target: str, status: str, note: str = "") -> dict:
    return {"event_id": eid, "lamport": lamport, "author": author, "wall_clock": f"2026-12-01T11:{lamport:02d}:00Z",
            "event_type": ACKED, "data": {"target_event_id": target, "status": status, "note": note}}


def wire(view: AlertView, eid: str, me: str = B, members=(A, B, C, D)) -> dict:
    return view.to_wire(view.alerts[eid], now=NOW, me=me, members=members, names={B: "bob"})


def test_rollup_latest_ack_wins_and_not_heard_excludes_the_sender():
    view = AlertView()
    for ev in (alert("01ALERT1", 1), ack("01ACK1", 2, B, "01ALERT1", "need_help", "stuck"),
               ack("01ACK2", 3, B, "01ALERT1", "ok", "fine now"), ack("01ACK3", 4, C, "01ALERT1", "other", "away")):
        view.apply(ev)
    w = wire(view, "01ALERT1")
    r = w["rollup"]
    assert [(e["node_id"], e["name"], e["note"]) for e in r["ok"]] == [(B, "bob", "fine now")]
    assert r["need_help"] == [] and [e["node_id"] for e in r["other"]] == [C]
    assert r["not_heard"] == [{"node_id": D, "name": None}]  # A is the sender, B and C answered
    assert w["my_ack"] == {"status": "ok", "note": "fine now", "at": "2026-12-01T11:03:00Z"}
    assert w["sender"] == A and w["active"] and not w["exercise"] and w["superseded_by"] is None


def test_an_older_ack_arriving_later_does_not_override():
    view = AlertView()
    view.apply(ack("01ACK2", 5, B, "01ALERT1", "ok"))  # an ack may come before its alert (another batch)
    view.apply(ack("01ACK1", 3, B, "01ALERT1", "need_help"))
    view.apply(alert("01ALERT1", 1))
    assert [e["node_id"] for e in wire(view, "01ALERT1")["rollup"]["ok"]] == [B]


def test_not_heard_follows_the_membership_given():
    view = AlertView()
    view.apply(alert("01ALERT1", 1))
    assert [e["node_id"] for e in wire(view, "01ALERT1", members=(A, C))["rollup"]["not_heard"]] == [C]
    assert wire(view, "01ALERT1", members=())["rollup"]["not_heard"] == []


def test_update_supersedes_and_cancel_cancels_in_any_order():
    view = AlertView()
    view.apply(alert("01CANCEL", 3, "Cancel", ("01UPDATE",)))  # arrives first
    view.apply(alert("01UPDATE", 2, "Update", ("01ALERT1",)))
    view.apply(alert("01ALERT1", 1))
    first, update, cancel = wire(view, "01ALERT1"), wire(view, "01UPDATE"), wire(view, "01CANCEL")
    assert first["superseded_by"] == "01UPDATE" and not first["active"] and not first["cancelled"]
    assert update["superseded_by"] == "01CANCEL" and update["cancelled"] and not update["active"]
    assert cancel["references"] == ["01UPDATE"] and not cancel["active"]  # a Cancel calls for no action
    assert [a.event_id for a in view.newest_first()] == ["01CANCEL", "01UPDATE", "01ALERT1"]


def test_expired_and_exercise():
    view = AlertView()
    view.apply(alert("01OLD", 1, expires=NOW - timedelta(seconds=1)))
    view.apply(alert("01DRILL", 2, status="Exercise"))
    view.apply(alert("01TEST", 3, status="Test"))
    assert not wire(view, "01OLD")["active"] and not wire(view, "01OLD")["exercise"]
    assert wire(view, "01DRILL")["exercise"] and wire(view, "01DRILL")["active"]
    assert wire(view, "01TEST")["exercise"] and wire(view, "01DRILL")["status"] == "Exercise"


def test_resolve_by_id_or_unique_prefix():
    view = AlertView()
    view.apply(alert("01ABCDEF1", 1))
    view.apply(alert("01ABCDEF2", 2))
    assert view.resolve("01ABCDEF1") == ["01ABCDEF1"]
    assert view.resolve("01ABCDEF") == ["01ABCDEF1", "01ABCDEF2"]
    assert view.resolve("01ABC") == []  # too short to be a prefix
    assert view.resolve("zzzzzzzz") == []


def test_events_of_other_types_or_malformed_are_ignored():
    view = AlertView()
    view.apply({"event_type": "market.post.created", "event_id": "x", "data": {}})
    view.apply({"event_type": ISSUED, "event_id": "y", "data": None})
    assert view.alerts == {} and view.acks == {}
