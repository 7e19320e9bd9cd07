"""GovernanceService on a few in-process nodes (real EventLogs, a fake bus; see
governance_net.py): proposals and frontiers, owner approvals, co-signing and its
refusals, thresholds from the policy, invites and the member listing."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from hearthnet.errors import HearthNetError
from hearthnet.identity import keys
from hearthnet.ledger.events import valid_co_signers
from hearthnet.onboarding.invite import decode_invite
from hearthnet.services.governance import APPROVALS_FILE, GovernanceService
from tests.unit.ledger.conftest import post_data
from tests.unit.services.governance_net import ENDPOINT, Net
from tests.unit.xdg_fixture import isolated_xdg  # noqa: F401  (autouse)


@pytest.fixture
def net(tmp_path: Path) -> Any:
    n = Net(tmp_path)
    yield n
    n.close()


@pytest.fixture
def four(net: Net) -> Net:
    """alice (anchor), bob and carol (trusted), dave (member): revoking needs 3 signatures."""
    net.join("bob", "trusted")
    net.join("carol", "trusted")
    net.join("dave")
    return net


def level(node, node_id: str) -> str | None:
    return node.log.view.level_of(node_id)


def error_of(fn, *args, **kw) -> HearthNetError:
    with pytest.raises(HearthNetError) as err:
        fn(*args, **kw)
    return err.value


def test_capabilities_and_their_trust(net: Net) -> None:
    caps = {c.name: c.descriptor() for c in net["alice"].service.capabilities()}
    assert {n: d["trust_required"] for n, d in caps.items()} == {
        "community.invite": "member", "community.revoke": "trusted", "community.promote": "trusted",
        "community.demote": "trusted", "community.members.list": "self"}
    assert not any(d["idempotent"] for d in caps.values())


def test_promote_needs_one_signature_and_asks_nobody(net: Net) -> None:
    bob = net.join("bob")
    net.join("carol", "trusted")
    out = net["alice"].call("community.promote", {"target_node_id": bob.id})
    assert out["status"] == "promoted" and out["signers"] == [net.cid] and out["event_id"]
    assert all(level(n, bob.id) == "trusted" for n in net.nodes.values())
    assert not [c for c in net["alice"].bus.calls if c[1] != net.cid]  # no co-sign requests
    assert json.loads((net.root / "alice" / APPROVALS_FILE).read_text())["approvals"] == []


def test_revoke_collects_signatures_across_owner_approvals(four: Net) -> None:
    alice, bob, carol, dave = (four[n] for n in ("alice", "bob", "carol", "dave"))
    first = alice.call("community.revoke", {"target_node_id": dave.id, "reason": "compromised"})
    assert first["status"] == "pending" and (first["signatures"], first["needed"]) == (1, 3)
    assert first["waiting_for"] == sorted([bob.id, carol.id])  # never the target itself
    assert {r["node_id"]: r["error"] for r in first["refused"]} == {bob.id: "unauthorized", carol.id: "unauthorized"}
    assert all("has not approved revoking" in r["message"] for r in first["refused"])
    assert level(alice, dave.id) == "member"

    second = bob.call("community.revoke", {"target_node_id": dave.id, "reason": "compromised"})
    assert second["status"] == "pending" and second["signers"] == [bob.id, alice.id]
    assert second["waiting_for"] == [carol.id]

    done = carol.call("community.revoke", {"target_node_id": dave.id, "reason": "inactive"})
    assert done["status"] == "revoked" and set(done["signers"]) == {alice.id, bob.id, carol.id}
    ev = carol.log.get(done["event_id"])
    assert ev["author"] == carol.id and ev["data"]["reason"] == "inactive"
    assert valid_co_signers(ev) == {alice.id, bob.id}
    assert ev["data"]["frontier"] == sorted(e["event_id"] for e in carol.log.events(author=dave.id))
    for node in four.nodes.values():
        assert dave.id in node.log.view.revoked and level(node, dave.id) is None
    assert carol.service.approvals.find("revoke", dave.id) is None
    # the target is gone: nothing more to co-sign or approve
    assert error_of(alice.call, "community.revoke", {"target_node_id": dave.id, "reason": "other"}).code == "not_found"


def test_frontier_lists_the_targets_events_and_joins_through_its_invites(four: Net) -> None:
    alice, dave = four["alice"], four["dave"]
    post = dave.log.append_local(dave.kp, "market.post.created", post_data(1))
    four.broadcast(post, dave)
    erin = four.join("erin", inviter="dave")
    other = alice.log.append_local(alice.kp, "market.post.created", post_data(2))
    four.broadcast(other, alice)
    out = alice.call("community.revoke", {"target_node_id": dave.id, "reason": "policy_violation"})
    assert out["status"] == "pending"
    proposal = next(c[2]["input"]["proposal"] for c in alice.bus.calls if c[0] == "community.revoke")
    erin_join = alice.log.events(event_types=["community.member.joined"], author=erin.id)[0]["event_id"]
    dave_events = [e["event_id"] for e in alice.log.events(author=dave.id)]
    assert post["event_id"] in dave_events and len(dave_events) == 3  # join, post, erin's invite
    assert proposal == {"target_node_id": dave.id, "reason": "policy_violation",
                        "frontier": sorted(dave_events + [erin_join])}
    assert other["event_id"] not in proposal["frontier"]


def revoke_request(net: Net, target: str, frontier: list[str] | None = None) -> dict[str, Any]:
    fr = frontier if frontier is not None else sorted(e["event_id"] for e in net["alice"].log.events(author=target))
    return {"proposal": {"target_node_id": target, "reason": "compromised", "frontier": fr}}


def test_co_sign_only_what_the_owner_approved(four: Net) -> None:
    alice, bob, carol, dave = (four[n] for n in ("alice", "bob", "carol", "dave"))
    err = error_of(bob.call, "community.revoke", revoke_request(four, dave.id), caller=alice.id)
    assert err.code == "unauthorized" and "has not approved revoking" in err.message
    bob.service.approvals.approve("revoke", dave.id, reason="other")
    signed = bob.call("community.revoke", revoke_request(four, dave.id), caller=alice.id)["co_signer"]
    assert signed["node_id"] == bob.id
    # an approval for another action does not count
    bob.service.approvals.approve("demote", carol.id, new_level="member")
    assert error_of(bob.call, "community.revoke", revoke_request(four, carol.id), caller=alice.id).code == "unauthorized"
    # approvals expire
    four.clock.offset = timedelta(days=8)
    assert error_of(bob.call, "community.revoke", revoke_request(four, dave.id), caller=alice.id).code == "unauthorized"


def test_co_sign_refusals(four: Net) -> None:
    alice, bob, carol, dave = (four[n] for n in ("alice", "bob", "carol", "dave"))
    bob.service.approvals.approve("revoke", dave.id, reason="other")
    # a plain member may not ask
    assert error_of(bob.call, "community.revoke", revoke_request(four, dave.id), caller=dave.id).code == "unauthorized"
    # a stranger may not either
    stranger = keys.generate().node_id_full
    assert error_of(bob.call, "community.revoke", revoke_request(four, dave.id), caller=stranger).code == "unauthorized"
    # a frontier listing someone else's event
    foreign = alice.log.events(author=carol.id)[0]["event_id"]
    err = error_of(bob.call, "community.revoke", revoke_request(four, dave.id, sorted([foreign])), caller=alice.id)
    assert err.code == "bad_request" and "frontier" in err.message
    # ids we do not know are ignored
    unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    ids = sorted(revoke_request(four, dave.id)["proposal"]["frontier"] + [unknown])
    assert bob.call("community.revoke", revoke_request(four, dave.id, ids), caller=alice.id)["co_signer"]
    # malformed proposals
    for bad in ({"target_node_id": dave.id}, {"target_node_id": dave.id, "reason": "x", "frontier": []},
                {"target_node_id": dave.id, "reason": "other", "frontier": ["b", "a"]},
                {"target_node_id": "ed25519:nope", "reason": "other", "frontier": []}, "text"):
        assert error_of(bob.call, "community.revoke", {"proposal": bad}, caller=alice.id).code == "bad_request"
    # the owner does not send proposals; a peer does not start one
    assert error_of(bob.call, "community.revoke", revoke_request(four, dave.id)).code == "bad_request"
    err = error_of(bob.call, "community.revoke", {"target_node_id": dave.id, "reason": "other"}, caller=alice.id)
    assert err.code == "unauthorized"


def test_a_node_that_does_not_answer_or_signs_garbage_does_not_count(four: Net) -> None:
    alice, bob, carol, dave = (four[n] for n in ("alice", "bob", "carol", "dave"))
    bob.service.approvals.approve("revoke", dave.id, reason="other")
    carol.service.approvals.approve("revoke", dave.id, reason="other")
    four.offline.add(carol.id)

    async def forged(action: Any, caller: str, proposal: Any) -> dict[str, Any]:
        return {"co_signer": {"node_id": bob.id, "signature": carol.kp.sign_bytes(b"something else")}}

    bob.service._co_sign = forged  # type: ignore[method-assign]
    out = alice.call("community.revoke", {"target_node_id": dave.id, "reason": "other"})
    assert out["status"] == "pending" and out["signatures"] == 1
    assert {r["node_id"]: r["error"] for r in out["refused"]} == {bob.id: "invalid_signature", carol.id: "not_found"}


def test_thresholds_come_from_the_policy(tmp_path: Path) -> None:
    net = Net(tmp_path, policy={"min_signatures_to_revoke": 2, "min_signatures_to_demote": 2})
    try:
        bob, carol = net.join("bob", "trusted"), net.join("carol", "trusted")
        dave = net.join("dave")
        assert net["alice"].call("community.revoke", {"target_node_id": dave.id, "reason": "other"})["needed"] == 2
        out = bob.call("community.revoke", {"target_node_id": dave.id, "reason": "other"})
        assert out["status"] == "revoked" and out["signers"] == [bob.id, net.cid]
        # demote: carol trusted -> member, with alice and bob
        pending = net["alice"].call("community.demote", {"target_node_id": carol.id})
        assert pending["status"] == "pending" and pending["waiting_for"] == [bob.id]
        done = bob.call("community.demote", {"target_node_id": carol.id, "new_level": "member"})
        assert done["status"] == "demoted" and level(net["alice"], carol.id) == "member"
    finally:
        net.close()


def test_demote_co_sign_needs_the_same_new_level(tmp_path: Path) -> None:
    net = Net(tmp_path, policy={"min_signatures_to_demote": 2})
    try:
        net.join("bob", "trusted")
        carol = net.join("carol", "trusted")
        net["alice"].call("community.promote", {"target_node_id": carol.id})  # carol: anchor
        assert level(net["alice"], carol.id) == "anchor"
        net["bob"].service.approvals.approve("demote", carol.id, new_level="member")
        out = net["alice"].call("community.demote", {"target_node_id": carol.id})  # default: anchor -> trusted
        assert out["status"] == "pending" and "has not approved demoting" in out["refused"][0]["message"]
    finally:
        net.close()


def test_owner_side_refusals(four: Net) -> None:
    alice, bob, carol, dave = (four[n] for n in ("alice", "bob", "carol", "dave"))
    assert error_of(alice.call, "community.revoke", {"target_node_id": alice.id, "reason": "other"}).code == "bad_request"
    assert error_of(alice.call, "community.revoke", {"target_node_id": dave.id, "reason": "bored"}).code == "bad_request"
    assert error_of(alice.call, "community.revoke", {"target_node_id": "dave", "reason": "other"}).code == "bad_request"
    stranger = keys.generate().node_id_full
    assert error_of(alice.call, "community.revoke", {"target_node_id": stranger, "reason": "other"}).code == "not_found"
    # a plain member cannot take part; nobody promotes above their own level
    assert error_of(dave.call, "community.promote", {"target_node_id": bob.id}).code == "unauthorized"
    assert error_of(bob.call, "community.promote", {"target_node_id": carol.id}).code == "unauthorized"
    # no level below member, nothing above anchor, no sideways moves
    assert error_of(alice.call, "community.demote", {"target_node_id": dave.id}).code == "bad_request"
    err = error_of(alice.call, "community.promote", {"target_node_id": bob.id, "new_level": "member"})
    assert err.code == "bad_request"
    assert not alice.service.approvals.list()  # refused before anything was approved


def test_invite_records_reissues_and_refuses(net: Net) -> None:
    alice = net["alice"]
    bob = keys.generate().node_id_full
    made = alice.call("community.invite", {"invitee_node_id": bob, "level": "member", "ttl_seconds": 7200,
                                           "display_name": "Bob's laptop"})
    assert set(made) == {"invite", "invite_blob", "invitee_node_id", "invitee_display_name", "level", "expires_at",
                         "community_id", "community_name", "event_id", "reissued"}
    assert not made["reissued"] and made["community_name"] == "Maple Street"
    ev = alice.log.get(made["event_id"])
    assert ev["data"] == {"invitee_node_id": bob, "display_name": "Bob's laptop", "initial_level": "member",
                          "expires_at": made["expires_at"]}
    for text in (made["invite"], made["invite_blob"]):
        blob = decode_invite(text)
        assert blob.signature_ok() and blob.inviter_node_id == alice.id and blob.invitee_node_id == bob
        assert list(blob.bootstrap_endpoints) == [ENDPOINT] and blob.expires_at == made["expires_at"]
    again = alice.call("community.invite", {"invitee_node_id": bob, "ttl_seconds": 60})
    assert again["reissued"] and again["event_id"] == made["event_id"] and again["expires_at"] == made["expires_at"]
    trusted = alice.call("community.invite", {"invitee_node_id": bob, "level": "trusted"})
    assert not trusted["reissued"] and trusted["event_id"] != made["event_id"]
    net.clock.offset = timedelta(hours=1, minutes=55)  # about to expire: a new one
    assert not alice.call("community.invite", {"invitee_node_id": bob})["reissued"]


def test_invite_refusals(tmp_path: Path) -> None:
    net = Net(tmp_path, policy={"default_member_can_invite": False})
    try:
        alice, bob = net["alice"], net.join("bob")
        err = error_of(alice.call, "community.invite", {"invitee_node_id": bob.id})
        assert err.code == "bad_request" and err.details["reason"] == "already_member"
        assert error_of(alice.call, "community.invite", {"invitee_node_id": alice.id}).code == "bad_request"
        someone = keys.generate().node_id_full
        for bad in ({"level": "anchor"}, {"ttl_seconds": 0}, {"ttl_seconds": "1"}, {"invitee_node_id": "x"}):
            assert error_of(alice.call, "community.invite", {"invitee_node_id": someone, **bad}).code == "bad_request"
        # a peer asking: needs the invite right (members may not here), and a stranger none
        assert error_of(alice.call, "community.invite", {"invitee_node_id": someone}, caller=bob.id).code == "unauthorized"
        stranger = keys.generate().node_id_full
        assert error_of(alice.call, "community.invite", {"invitee_node_id": someone}, caller=stranger).code == "unauthorized"
        # the ledger judges this node's own right: bob, a member, may not invite here
        err = error_of(bob.call, "community.invite", {"invitee_node_id": someone})
        assert err.code == "unauthorized"
        bob.service.endpoints = lambda: []
        net["alice"].service.endpoints = lambda: []
        assert "no address" in error_of(alice.call, "community.invite", {"invitee_node_id": someone}).message
    finally:
        net.close()


def test_members_list(four: Net) -> None:
    alice, bob, dave = four["alice"], four["bob"], four["dave"]
    invited = alice.call("community.invite", {"invitee_node_id": keys.generate().node_id_full,
                                              "display_name": "frank"})
    alice.call("community.revoke", {"target_node_id": dave.id, "reason": "other"})
    bob.service.approvals.approve("revoke", dave.id, reason="other")
    four["carol"].service.approvals.approve("revoke", dave.id, reason="other")
    alice.call("community.revoke", {"target_node_id": dave.id, "reason": "other"})  # now complete
    out = bob.call("community.members.list", {})
    assert out["community_id"] == four.cid and out["community_name"] == "Maple Street" and out["node_id"] == bob.id
    assert [(m["display_name"], m["level"]) for m in sorted(out["members"], key=lambda m: m["display_name"])] == [
        ("alice", "anchor"), ("bob", "trusted"), ("carol", "trusted")]
    assert all(m["node_id_short"].startswith("ed25519:") and m["added_at"] and m["added_by"] for m in out["members"])
    assert [(r["node_id"], r["revoked_by"], r["display_name"]) for r in out["revoked"]] == [(dave.id, alice.id, "dave")]
    assert [(i["event_id"], i["display_name"], i["level"]) for i in out["pending_invites"]] == [
        (invited["event_id"], "frank", "member")]
    assert out["policy"] == {"invite": 1, "promote": 1, "demote": 3, "revoke": 3, "default_member_can_invite": True}
    assert [(a["action"], a["target_node_id"]) for a in out["approvals"]] == [("revoke", dave.id)]


def test_service_from_config_needs_a_community() -> None:
    from hearthnet.config import load_config

    with pytest.raises(HearthNetError) as err:
        GovernanceService.from_config(load_config())
    assert err.value.code == "not_initialised"
