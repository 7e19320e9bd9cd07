"""The order-proof membership rules through a real node (views.py R1–R4): the founder
revokes a member; that member's back-dated events (an invite for a puppet, the puppet's
join and chat, a chat of its own), pushed over the signed sync route by itself or relayed
by a member, are refused; a demoted member's back-dated invite above its new level is
deleted when the demotion arrives and refused afterwards; a late joiner with a back-dated clock gets no admission and its
join is refused; the normal invite redeem carries the inviter's admission end to end."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from hearthnet.errors import HearthNetError
from hearthnet.identity import keys
from hearthnet.identity.keys import KeyPair
from hearthnet.identity.manifest import rfc3339
from hearthnet.ledger.events import build_admission, build_event
from hearthnet.testing.nodes import Node, join_by_invite, key_of
from hearthnet.transport.client import PeerClient
from hearthnet.transport.pinning import PinStore
from hearthnet.transport.signing import SYNC_ADMIT, SYNC_EVENTS

pytestmark = pytest.mark.integration


def local_call(node: Node, cap: str, inp: dict[str, Any]) -> dict[str, Any]:
    status, body = node.call(cap, {"params": {}, "input": inp})
    assert status == 200, body
    return body["output"]


def append(node: Node, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    return local_call(node, "community.log.append", {"event_type": event_type, "data": data})["event"]


def stored(node: Node, event_ids: list[str]) -> list[str]:
    return [ev["event_id"] for ev in local_call(node, "community.log.events", {"ids": event_ids})["events"]]


def members(node: Node) -> dict[str, Any]:
    return local_call(node, "community.members.get", {})


class Hostile:
    """A small client speaking the wire contract to the founder's node with any key."""

    def __init__(self, node: Node, cid: str, pins: Path) -> None:
        self.cid, self.pins = cid, pins  # the founder's node id is the community id
        self.endpoint = {"transport": "https", "host": "127.0.0.1", "port": node.port}

    def post(self, kp: KeyPair, path: str, capability: str, body: dict[str, Any]) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            async with PeerClient(kp, self.cid, PinStore(self.pins)) as client:
                return await client.post_signed(self.cid, self.endpoint, path, capability, body)

        return asyncio.run(go())


@pytest.fixture
def community(make_node, tmp_path):
    """Founder `a` running with policy min_signatures_to_revoke|demote = 1; `bad` and `relay`
    joined by invite (they need not run: the test speaks with their keys)."""
    a, bad, relay = make_node("alice"), make_node("bad"), make_node("relay")
    a.init()
    a.start(wait_workers=("broker", "gateway", "ledger"))
    cid = a.api("/api/v1/status")["node"]["node_id"]
    policy = {**members_policy(a), "min_signatures_to_revoke": 1, "min_signatures_to_demote": 1}
    append(a, "community.policy.updated", {"policy": policy})
    join_by_invite(a, bad)
    join_by_invite(a, relay)
    return a, bad, relay, cid, Hostile(a, cid, tmp_path / "hostile-pins.json")


def _reasons(reply: dict[str, Any]) -> dict[str, str]:
    return {r["event_id"]: r["reason"] for r in reply["rejected_reasons"]}


def members_policy(node: Node) -> dict[str, Any]:
    created = local_call(node, "community.log.events", {"event_types": ["community.created"]})["events"]
    return dict(created[0]["data"]["policy"])


def test_the_normal_redeem_carries_the_inviters_admission(community) -> None:
    a, bad, relay, cid, hostile = community
    ids = {m["node_id"] for m in members(a)["members"]}
    assert {key_of(bad).node_id_full, key_of(relay).node_id_full} <= ids
    joins = local_call(a, "community.log.events", {"event_types": ["community.member.joined"]})["events"]
    theirs = [j for j in joins if j["author"] == key_of(bad).node_id_full]
    assert len(theirs) == 1 and theirs[0]["data"]["admission"]["by"] == cid
    with pytest.raises(HearthNetError) as err:  # a used invite admits no second join
        hostile.post(key_of(bad), "/sync/v1/admit", SYNC_ADMIT,
                     {"community_id": cid, "invite_event_id": theirs[0]["data"]["invite_event_id"]})
    assert err.value.code == "unauthorized"


def test_back_dated_events_of_a_revoked_member_are_refused(community) -> None:
    a, bad, relay, cid, hostile = community
    bad_kp, relay_kp, puppet = key_of(bad), key_of(relay), keys.generate()
    for n in range(3):  # room between bad's join and the revocation for back-dated lamports
        append(a, "file.cid.advertised", {"cid": f"blake3:{n:064x}", "sizes_bytes": 1})
    frontier = local_call(a, "community.log.frontier", {"target_node_id": bad_kp.node_id_full})["frontier"]
    revoke = append(a, "community.member.revoked", {"target_node_id": bad_kp.node_id_full, "reason": "compromised",
                                                    "co_signers": [], "frontier": frontier})
    assert bad_kp.node_id_full in {r["node_id"] for r in members(a)["revoked"]}
    low = revoke["lamport"] - 3
    invite = build_event(bad_kp, cid, low, "community.member.invited", {
        "invitee_node_id": puppet.node_id_full, "display_name": "puppet", "initial_level": "member",
        "expires_at": rfc3339(datetime.now(timezone.utc) + timedelta(hours=1))})
    joined = build_event(puppet, cid, low + 1, "community.member.joined", {
        "invite_event_id": invite["event_id"], "node_manifest": {"node_id": puppet.node_id_full},
        "admission": build_admission(bad_kp, invite["event_id"], puppet.node_id_full)})
    chat = {"client_id": "c", "recipient": cid, "body": "hi", "attachments": []}
    puppet_chat = build_event(puppet, cid, low + 2, "chat.message.sent", chat)
    bad_chat = build_event(bad_kp, cid, low, "chat.message.sent", chat)
    events = [invite, joined, puppet_chat, bad_chat]
    body = {"community_id": cid, "events": events}
    expected = {invite["event_id"]: "revoked_author", joined["event_id"]: "unknown_author",
                puppet_chat["event_id"]: "unknown_author", bad_chat["event_id"]: "revoked_author"}
    try:  # the revoked node itself: refused at the door, or by the ledger's rules
        reply = hostile.post(bad_kp, "/sync/v1/events", SYNC_EVENTS, body)
    except HearthNetError as exc:
        assert exc.code == "revoked"
    else:
        assert reply["accepted"] == 0 and _reasons(reply) == expected
    reply = hostile.post(relay_kp, "/sync/v1/events", SYNC_EVENTS, body)  # relayed by a member
    assert reply["accepted"] == 0 and reply["rejected"] == 4 and _reasons(reply) == expected
    assert stored(a, [ev["event_id"] for ev in events]) == []
    assert puppet.node_id_full not in {m["node_id"] for m in members(a)["members"]}


def test_a_late_join_with_a_back_dated_clock_is_refused(community, make_node) -> None:
    a, bad, relay, cid, hostile = community
    late_node = make_node("late")
    late_node.cli_json("id")  # makes its key
    late = key_of(late_node)
    expired_at = datetime.now(timezone.utc) - timedelta(minutes=5)
    invite = append(a, "community.member.invited", {
        "invitee_node_id": late.node_id_full, "display_name": "late", "initial_level": "member",
        "expires_at": rfc3339(expired_at)})
    with pytest.raises(HearthNetError) as err:  # the inviter's node admits no one late
        hostile.post(late, "/sync/v1/admit", SYNC_ADMIT, {"community_id": cid, "invite_event_id": invite["event_id"]})
    assert err.value.code == "invite_expired"
    back_dated = expired_at - timedelta(hours=1)  # the joiner's clock says it was in time
    forged = build_admission(late, invite["event_id"], late.node_id_full, back_dated)
    attempts = [build_event(late, cid, invite["lamport"] + 1, "community.member.joined", {
        "invite_event_id": invite["event_id"], "node_manifest": {"node_id": late.node_id_full},
        "admission": admission}, now=back_dated) for admission in ({**forged, "by": cid}, forged)]
    reply = hostile.post(key_of(relay), "/sync/v1/events", SYNC_EVENTS, {"community_id": cid, "events": attempts})
    assert reply["accepted"] == 0 and {r["reason"] for r in reply["rejected_reasons"]} == {"unknown_author"}
    assert late.node_id_full not in {m["node_id"] for m in members(a)["members"]}
    # A timely admission still works for a fresh invite: the route is not simply closed.
    fresh = append(a, "community.member.invited", {
        "invitee_node_id": late.node_id_full, "display_name": "late", "initial_level": "member",
        "expires_at": rfc3339(datetime.now(timezone.utc) + timedelta(hours=1))})
    admission = hostile.post(late, "/sync/v1/admit", SYNC_ADMIT,
                             {"community_id": cid, "invite_event_id": fresh["event_id"]})["admission"]
    assert admission["by"] == cid
    with pytest.raises(HearthNetError) as err:  # not the addressee
        hostile.post(key_of(relay), "/sync/v1/admit", SYNC_ADMIT, {"community_id": cid, "invite_event_id": fresh["event_id"]})
    assert err.value.code == "unauthorized"


def test_a_demoted_members_back_dated_rights_are_deleted_then_refused(community) -> None:
    a, bad, relay, cid, hostile = community
    bad_kp, relay_kp, puppet = key_of(bad), key_of(relay), keys.generate()
    promoted = append(a, "community.member.promoted", {"target_node_id": bad_kp.node_id_full,
                                                       "new_level": "trusted", "co_signers": []})
    for n in range(3):  # room between the promotion and the demotion for back-dated lamports
        append(a, "file.cid.advertised", {"cid": f"blake3:{n:064x}", "sizes_bytes": 1})
    # The frontier as a demoter that has not seen the attack would build it.
    frontier = local_call(a, "community.log.frontier", {"target_node_id": bad_kp.node_id_full,
                                                        "action": "demote"})["frontier"]
    low = promoted["lamport"] + 1
    invite = build_event(bad_kp, cid, low, "community.member.invited", {
        "invitee_node_id": puppet.node_id_full, "display_name": "puppet", "initial_level": "trusted",
        "expires_at": rfc3339(datetime.now(timezone.utc) + timedelta(hours=1))})
    joined = build_event(puppet, cid, low + 1, "community.member.joined", {
        "invite_event_id": invite["event_id"], "node_manifest": {"node_id": puppet.node_id_full},
        "admission": build_admission(bad_kp, invite["event_id"], puppet.node_id_full)})
    body = {"community_id": cid, "events": [invite, joined]}
    assert hostile.post(relay_kp, "/sync/v1/events", SYNC_EVENTS, body)["accepted"] == 2  # bad is trusted there
    levels = {m["node_id"]: m["level"] for m in members(a)["members"]}
    assert levels[puppet.node_id_full] == "trusted"
    append(a, "community.member.demoted", {"target_node_id": bad_kp.node_id_full, "new_level": "member",
                                           "co_signers": [], "frontier": frontier})
    levels = {m["node_id"]: m["level"] for m in members(a)["members"]}
    assert levels[bad_kp.node_id_full] == "member" and puppet.node_id_full not in levels
    assert stored(a, [invite["event_id"], joined["event_id"]]) == []
    reply = hostile.post(relay_kp, "/sync/v1/events", SYNC_EVENTS, body)  # and again: refused
    assert reply["accepted"] == 0 and _reasons(reply) == {invite["event_id"]: "unauthorized",
                                                          joined["event_id"]: "unknown_author"}
