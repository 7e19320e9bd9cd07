from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from hearthnet.identity import keys
from hearthnet.identity.keys import KeyPair
from hearthnet.identity.manifest import rfc3339, verify_community_manifest
from hearthnet.ledger.events import sort_key
from hearthnet.ledger.store import EventLog
from hearthnet.ledger.views import CommunityView
from tests.unit.ledger.conftest import Community, post_data

LEVELS = ["member", "trusted", "anchor"]


def _signers(rng: random.Random, nodes: list[KeyPair], n: int) -> list[KeyPair]:
    return rng.sample(nodes, min(n, len(nodes)))


def random_history(tmp_path: Path, seed: int) -> tuple[Community, list[dict[str, Any]]]:
    """A community grown by random invites, joins, promotions, demotions, revocations,
    policy updates and posts, some authored concurrently (lamports below the head). Only
    what the log accepted is returned, so every event is one a real node could hold."""
    rng = random.Random(seed)
    root = keys.generate()
    log = EventLog(tmp_path / f"h{seed}.sqlite", root.node_id_full)
    log.create_genesis(root, "Maple", None)
    c = Community(log, root)
    nodes = [root]
    for _ in range(70):
        action = rng.choice(["join", "join", "post", "post", "promote", "demote", "revoke", "policy"])
        author = rng.choice(nodes)
        lamport = max(1, log.clock + 1 - rng.randint(0, 4))  # some concurrent with earlier events
        if action == "join":
            newcomer = keys.generate()
            level = rng.choice(LEVELS)
            invite = c.event(author, "community.member.invited", {
                "invitee_node_id": newcomer.node_id_full, "display_name": "n", "initial_level": level,
                "expires_at": rfc3339(datetime.now(timezone.utc) + timedelta(days=1))}, lamport=lamport)
            if log.append_received([invite]).accepted:
                c.keyring[author.node_id_full] = author
                if log.append_received([c.join_event(newcomer, invite)]).accepted:
                    nodes.append(newcomer)
                    c.keyring[newcomer.node_id_full] = newcomer
            continue
        if action == "post":
            ev = c.event(author, "market.post.created", post_data(rng.randint(0, 99)), lamport=lamport)
        elif action in ("promote", "demote"):
            target = rng.choice(nodes)
            ev = c.governance(author, f"community.member.{action}d",
                              {"target_node_id": target.node_id_full, "new_level": rng.choice(LEVELS)},
                              _signers(rng, nodes, rng.randint(0, 3)), lamport=lamport)
        elif action == "revoke":
            target = rng.choice(nodes[1:] or nodes)
            ev = c.governance(author, "community.member.revoked",
                              {"target_node_id": target.node_id_full, "reason": "other"}, _signers(rng, nodes, 3),
                              lamport=lamport)
        else:
            policy = {**log.view.policy, "default_member_can_invite": rng.random() < 0.5}
            ev = c.event(author, "community.policy.updated", {"policy": policy}, lamport=lamport)
        log.append_received([ev])
    return c, log.events()


@pytest.mark.parametrize("seed", range(12))
def test_view_is_order_independent(tmp_path: Path, seed: int) -> None:
    c, events = random_history(tmp_path, seed)
    reference = CommunityView(c.cid)
    for ev in sorted(events, key=sort_key):
        reference.apply(ev)
    expected = reference.snapshot_state()
    assert len(expected["members"]) > 1  # the history did grow the community
    assert c.log.view.snapshot_state() == expected  # arrival order of the live log
    rng = random.Random(seed)
    for _ in range(8):
        shuffled = events[:]
        rng.shuffle(shuffled)
        view = CommunityView(c.cid)
        for ev in shuffled + shuffled[: len(shuffled) // 3]:  # re-delivery changes nothing either
            view.apply(ev)
        assert view.snapshot_state() == expected
    c.log.close()


def test_a_late_event_is_placed_by_lamport_not_by_arrival(community: Community) -> None:
    """Promote (lamport 20) then demote (lamport 30) of the same member: whichever
    arrives first, the member ends at the demoted level."""
    t2 = community.add_member("t2", "trusted")
    t3 = community.add_member("t3", "trusted")
    m = community.add_member("m")
    promote = community.governance(community.root, "community.member.promoted",
                                   {"target_node_id": m.node_id_full, "new_level": "trusted"}, [], lamport=20)
    demote = community.governance(community.root, "community.member.demoted",
                                  {"target_node_id": m.node_id_full, "new_level": "member"}, [t2, t3], lamport=30)
    base = community.log.events()
    for order in ([promote, demote], [demote, promote]):
        view = CommunityView(community.cid)
        for ev in base + order:
            view.apply(ev)
        assert view.level_of(m.node_id_full) == "member"


def test_snapshot_state_round_trips(community: Community) -> None:
    community.add_member("a", "trusted")
    community.invite(community.root, keys.generate())  # one pending invite
    state = community.log.view.snapshot_state()
    view = CommunityView(community.cid)
    view.restore_state(state)
    assert view.snapshot_state() == state
    assert len(view.pending_invites()) == 1 and view.head_lamport == community.log.head()


def test_pending_invites_expire(community: Community) -> None:
    soon = datetime.now(timezone.utc) + timedelta(hours=1)
    community.invite(community.root, keys.generate(), expires_at=soon)
    view = community.log.view
    assert len(view.pending_invites()) == 1
    assert view.pending_invites(now=rfc3339(soon + timedelta(seconds=1))) == []


def test_manifest_signed_by_an_anchor_lists_members_and_revoked(community: Community) -> None:
    t1 = community.add_member("t1", "trusted")
    t2 = community.add_member("t2", "trusted")
    gone = community.add_member("gone")
    revoke = community.governance(community.root, "community.member.revoked",
                                  {"target_node_id": gone.node_id_full, "reason": "inactive"}, [t1, t2])
    community.log.append_received([revoke])
    m = community.log.view.manifest(community.root)
    verify_community_manifest(m)
    assert m["head_lamport"] == community.log.head() and m["root_key"] == community.cid
    assert {e["node_id"]: e["level"] for e in m["members"]} == {
        community.cid: "anchor", t1.node_id_full: "trusted", t2.node_id_full: "trusted"}
    assert m["revoked"] == [{"node_id": gone.node_id_full, "revoked_at": revoke["wall_clock"]}]
    assert community.log.view.manifest(t1) is None  # not an anchor, nothing verified yet


def test_non_anchor_serves_the_last_anchor_signed_manifest_it_verified(community: Community) -> None:
    view, t1 = community.log.view, community.add_member("t1", "trusted")
    older = view.manifest(community.root)
    community.add_member("x")
    newer = view.manifest(community.root)
    assert view.offer_manifest(newer) and not view.offer_manifest(older)  # never go back
    assert view.manifest(t1) == newer
    forged = t1.sign({k: v for k, v in newer.items() if k != "signature"})  # t1 is no anchor
    assert not view.offer_manifest(forged)
    assert not view.offer_manifest({**newer, "name": "Renamed"})  # bad signature
