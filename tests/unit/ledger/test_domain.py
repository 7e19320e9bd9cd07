"""Domain rules (hearthnet/ledger/domain.py) on a real EventLog: posts are updated only by
their author and expired by their author or a trusted moderator (never user_request by a
moderator); messages go to a current member other than their author; receipts come only
from the message's recipient; events pointing at nothing are refused. Local appends get
the contract's error codes; received ones are refused with reason and detail."""
from __future__ import annotations

import pytest

from hearthnet.ledger.errors import LedgerError
from tests.unit.ledger.conftest import post_data

NOW_TS = "2026-11-30T12:00:00Z"


def expire(post: dict, reason: str, n: int = 1) -> dict:
    return {"client_id": f"x{n}", "target_event_id": post["event_id"], "reason": reason}


def refused(community, ev: dict) -> dict:
    result = community.log.append_received([ev])
    assert result.accepted == 0 and result.rejected == 1, result
    return result.rejected_reasons[0]


def accepted(community, ev: dict) -> None:
    result = community.log.append_received([ev])
    assert result.accepted == 1, result.rejected_reasons


def test_only_the_author_updates_a_post(community):
    alice, bob = community.add_member("alice"), community.add_member("bob")
    post = community.event(alice, "market.post.created", post_data())
    accepted(community, post)
    forged = community.event(bob, "market.post.updated", {"client_id": "u1", "target_event_id": post["event_id"],
                                                            "fields": {"body": "sold"}})
    reason = refused(community, forged)
    assert reason["reason"] == "unauthorized" and "author" in reason["detail"] and reason["event_id"] == forged["event_id"]
    accepted(community, community.event(alice, "market.post.updated", {"client_id": "u2", "target_event_id":
                                                                        post["event_id"], "fields": {"body": "sold"}}))


def test_expiry_by_author_moderator_and_nobody_else(community):
    alice, bob = community.add_member("alice"), community.add_member("bob")
    mod = community.add_member("mod", level="trusted")
    post = community.event(alice, "market.post.created", post_data())
    accepted(community, post)
    assert refused(community, community.event(bob, "market.post.expired", expire(post, "fulfilled")))["reason"] == \
        "unauthorized"
    user_request = refused(community, community.event(mod, "market.post.expired", expire(post, "user_request")))
    assert user_request["reason"] == "unauthorized" and "user_request" in user_request["detail"]
    for n, reason in enumerate(("stale", "withdrawn")):
        accepted(community, community.event(mod, "market.post.expired", expire(post, reason, n + 2)))
    accepted(community, community.event(alice, "market.post.expired", expire(post, "user_request", 9)))


def test_events_pointing_at_nothing_are_refused_until_their_target_arrives(community):
    alice, bob = community.add_member("alice"), community.add_member("bob")
    post = community.event(alice, "market.post.created", post_data())
    update = community.event(alice, "market.post.updated", {"client_id": "u", "target_event_id": post["event_id"],
                                                             "fields": {"body": "x"}}, lamport=post["lamport"] + 1)
    assert refused(community, update)["reason"] == "unknown_target"
    # both in one batch: the post is judged first (replay order), so its update may rely on it
    result = community.log.append_received([update, post])
    assert result.accepted == 2, result.rejected_reasons
    # a receipt for a post is not a receipt
    assert refused(community, community.event(bob, "chat.message.read", {"target_event_id": post["event_id"],
                                                                         "read_at": NOW_TS}))["reason"] == "unknown_target"


def test_messages_go_to_members_and_only_recipients_acknowledge(community):
    alice, bob, carol = (community.add_member(n) for n in ("alice", "bob", "carol"))
    from hearthnet.identity import keys

    stranger = keys.generate().node_id_full
    msg = lambda author, to, n=0: community.event(author, "chat.message.sent", {  # noqa: E731
        "client_id": f"m{n}", "recipient": to, "body": "b64", "attachments": []})
    assert refused(community, msg(alice, stranger))["reason"] == "unknown_recipient"
    assert refused(community, msg(alice, alice.node_id_full))["reason"] == "unknown_recipient"
    sent = msg(alice, bob.node_id_full, 1)
    accepted(community, sent)
    receipt = lambda author, kind="chat.message.delivered": community.event(author, kind, {  # noqa: E731
        "target_event_id": sent["event_id"], ("delivered_at" if kind.endswith("delivered") else "read_at"): NOW_TS})
    forged = refused(community, receipt(carol))
    assert forged["reason"] == "unauthorized" and "recipient" in forged["detail"]
    assert refused(community, receipt(alice, "chat.message.read"))["reason"] == "unauthorized"
    accepted(community, receipt(bob))
    accepted(community, receipt(bob, "chat.message.read"))


def test_local_appends_get_contract_codes(community):
    alice = community.add_member("alice")
    post = community.log.append_local(community.root, "market.post.created", post_data())
    with pytest.raises(LedgerError) as exc:
        community.log.append_local(alice, "market.post.expired", expire(post, "withdrawn"))
    assert exc.value.code == "unauthorized" and "author" in exc.value.message
    with pytest.raises(LedgerError) as exc:
        community.log.append_local(community.root, "market.post.expired",
                                   {"client_id": "x", "target_event_id": "0" * 26, "reason": "withdrawn"})
    assert exc.value.code == "not_found"
    from hearthnet.identity import keys

    with pytest.raises(LedgerError) as exc:
        community.log.append_local(community.root, "chat.message.sent", {
            "client_id": "m", "recipient": keys.generate().node_id_full, "body": "x", "attachments": []})
    assert exc.value.code == "not_found" and "member" in exc.value.message
    with pytest.raises(LedgerError) as exc:  # shapes: a recipient must be a full node id
        community.log.append_local(community.root, "chat.message.sent", {
            "client_id": "m", "recipient": "bob", "body": "x", "attachments": []})
    assert exc.value.code == "bad_request"


def alert(n: int = 0, msg_type: str = "Alert", references: list[str] | None = None) -> dict:
    return {"identifier": f"a{n}", "status": "Actual", "msg_type": msg_type, "urgency": "Immediate",
            "severity": "Severe", "certainty": "Observed", "headline": "River above 7 m", "description": "",
            "instruction": "Leave by the dyke road", "area": "Lower town", "expires": "2026-12-01T10:00:00Z",
            "references": references or []}


def test_alerts_come_from_trusted_members_and_acknowledgements_point_at_alerts(community):
    alice, mod = community.add_member("alice"), community.add_member("mod", level="trusted")
    forged = refused(community, community.event(alice, "emergency.alert.issued", alert()))
    assert forged["reason"] == "unauthorized" and "trusted" in forged["detail"]
    issued = community.event(mod, "emergency.alert.issued", alert())
    accepted(community, issued)
    # an update must replace an alert of this log
    post = community.event(alice, "market.post.created", post_data())
    accepted(community, post)
    assert refused(community, community.event(mod, "emergency.alert.issued",
                                              alert(1, "Update", [post["event_id"]])))["reason"] == "unknown_target"
    accepted(community, community.event(mod, "emergency.alert.issued", alert(2, "Cancel", [issued["event_id"]])))
    ack = lambda target: community.event(alice, "emergency.alert.acknowledged", {  # noqa: E731
        "target_event_id": target, "status": "ok", "note": ""})
    assert refused(community, ack(post["event_id"]))["reason"] == "unknown_target"
    accepted(community, ack(issued["event_id"]))
    with pytest.raises(LedgerError) as exc:  # this node's own member may not issue one either
        community.log.append_local(alice, "emergency.alert.issued", alert(3))
    assert exc.value.code == "unauthorized"
