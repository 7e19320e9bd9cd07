"""The order-proof membership rules (views.py R1–R4): a revoked node's events outside its
revocation's frontier, joins through its invites, joins without the inviter's admission,
a demoted member's back-dated use of its old rights and a fallen co-signer's back-dated
signatures are refused when they arrive after the rule applies, and deleted when they
were stored first; either way every node ends with the same events and the same view."""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from hearthnet.identity import keys
from hearthnet.identity.keys import KeyPair
from hearthnet.identity.manifest import rfc3339
from hearthnet.ledger.events import GOVERNANCE_TYPES, build_admission, build_event
from hearthnet.ledger.snapshots import SnapshotStore, restore_view, take_snapshot, trusted_signers
from hearthnet.ledger.store import EventLog
from hearthnet.ledger.views import CommunityView
from tests.unit.ledger.conftest import Community, node_manifest_stub

REVOKED = "community.member.revoked"


def ids(log: EventLog) -> set[str]:
    return {ev["event_id"] for ev in log.events()}


def reasons(result: Any) -> dict[str, str]:
    return {r["event_id"]: r["reason"] for r in result.rejected_reasons}


def chat(c: Community, kp: KeyPair, lamport: int | None = None, body: str = "hi") -> dict[str, Any]:
    return c.event(kp, "chat.message.sent", {"client_id": body, "recipient": c.cid, "body": body,
                                             "attachments": []}, lamport=lamport)


def invited(c: Community, inviter: KeyPair, invitee: KeyPair, lamport: int | None = None,
            expires_at: datetime | None = None) -> dict[str, Any]:
    c.keyring[inviter.node_id_full] = inviter
    return c.event(inviter, "community.member.invited", {
        "invitee_node_id": invitee.node_id_full, "display_name": "p", "initial_level": "member",
        "expires_at": rfc3339(expires_at or datetime.now(timezone.utc) + timedelta(hours=1))}, lamport=lamport)


def revoke(c: Community, target: KeyPair) -> dict[str, Any]:
    """Revocation of `target` by the root with the two trusted co-signers (3 of 3), with
    the frontier of the log now, at a lamport that leaves room below it for back-dating."""
    data = {"target_node_id": target.node_id_full, "reason": "compromised"}
    return c.governance(c.root, REVOKED, data, [c.members["t1"], c.members["t2"]], lamport=c.log.clock + 10)


@pytest.fixture
def grown(community: Community) -> Community:
    """Two trusted co-signers and a trusted member `bad` who will be revoked."""
    for name in ("t1", "t2", "bad"):
        community.add_member(name, "trusted")
    return community


def puppet(c: Community, bad: KeyPair, lamport: int | None = None) -> tuple[KeyPair, list[dict[str, Any]]]:
    """What the issue's attacker served: a back-dated invite by `bad` for a fresh key
    (between bad's join and its revocation), that key's join (admitted by `bad`) and a
    chat message of the puppet."""
    kp = keys.generate()
    lamport = lamport or c.log.clock + 1
    inv = invited(c, bad, kp, lamport=lamport)
    joined = c.join_event(kp, inv, lamport=lamport + 1)
    return kp, [inv, joined, chat(c, kp, lamport=lamport + 2, body="puppet")]


# ----------------------------------------------------------------------------- R1 / R2


def test_back_dated_puppet_of_a_revoked_member_is_refused(grown: Community) -> None:
    log, bad = grown.log, grown.members["bad"]
    rev = revoke(grown, bad)
    kp, events = puppet(grown, bad)  # below the revocation's lamport, above bad's join
    assert events[-1]["lamport"] < rev["lamport"]
    assert log.append_received([rev]).accepted == 1
    result = log.append_received(events)
    assert result.accepted == 0
    assert reasons(result) == {events[0]["event_id"]: "revoked_author", events[1]["event_id"]: "unknown_author",
                               events[2]["event_id"]: "unknown_author"}
    assert not log.view.is_member(kp.node_id_full) and not ids(log) & {e["event_id"] for e in events}


def test_back_dated_puppet_stored_first_is_deleted_when_the_revocation_arrives(grown: Community) -> None:
    log, bad = grown.log, grown.members["bad"]
    rev = revoke(grown, bad)  # built by a node that never saw the puppet
    kp, events = puppet(grown, bad)
    assert log.append_received(events).accepted == 3 and log.view.is_member(kp.node_id_full)
    result = log.append_received([rev])
    assert result.accepted == 1 and sorted(result.purged) == sorted(e["event_id"] for e in events)
    assert not log.view.is_member(kp.node_id_full) and bad.node_id_full in log.view.revoked
    assert not ids(log) & {e["event_id"] for e in events}
    assert log.view.invalid == {}
    # The same state as a node that got the revocation first.
    other = EventLog(log.path.with_name("other.sqlite"), grown.cid)
    other.append_received([ev for ev in log.events() if ev["event_id"] != rev["event_id"]])
    other.append_received([rev])
    other.append_received(events)
    assert ids(other) == ids(log) and other.view.snapshot_state() == log.view.snapshot_state()
    other.close()


def test_back_dated_chat_of_a_revoked_member_is_refused_or_deleted(grown: Community) -> None:
    log, bad = grown.log, grown.members["bad"]
    rev = revoke(grown, bad)
    back_dated = chat(grown, bad, lamport=4, body="back-dated")
    stored_first = chat(grown, bad, lamport=6, body="stored first")
    assert log.append_received([stored_first]).accepted == 1
    result = log.append_received([rev])
    assert result.purged == [stored_first["event_id"]] and log.get(stored_first["event_id"]) is None
    result = log.append_received([back_dated, stored_first])
    assert reasons(result) == {back_dated["event_id"]: "revoked_author", stored_first["event_id"]: "revoked_author"}


def test_what_the_revoker_held_stays_valid_whatever_the_arrival_order(grown: Community) -> None:
    """The frontier keeps the revoked node's earlier events and the members it invited."""
    log, bad = grown.log, grown.members["bad"]
    newcomer = keys.generate()
    inv = grown.invite(bad, newcomer)
    assert log.append_received([grown.join_event(newcomer, inv)]).accepted == 1
    said = chat(grown, bad, body="before")
    assert log.append_received([said]).accepted == 1
    rev = revoke(grown, bad)
    assert set(rev["data"]["frontier"]) >= {inv["event_id"], said["event_id"]}
    assert log.append_received([rev]).accepted == 1 and not log.view.invalid
    assert log.view.is_member(newcomer.node_id_full) and log.get(said["event_id"]) == said
    # A node that receives the revocation before those events still takes them.
    fresh = EventLog(log.path.with_name("fresh.sqlite"), grown.cid)
    events = log.events()
    late = {inv["event_id"], said["event_id"]} | {e["event_id"] for e in events if e["author"] == newcomer.node_id_full}
    fresh.append_received([e for e in events if e["event_id"] not in late])
    assert fresh.append_received([e for e in events if e["event_id"] in late]).accepted == len(late)
    assert ids(fresh) == ids(log) and fresh.view.snapshot_state() == log.view.snapshot_state()
    fresh.close()


def test_a_pending_invite_of_a_revoked_member_is_void(grown: Community) -> None:
    log, bad, newcomer = grown.log, grown.members["bad"], keys.generate()
    inv = grown.invite(bad, newcomer)
    assert [i["event_id"] for i in log.view.pending_invites()] == [inv["event_id"]]
    assert log.append_received([revoke(grown, bad)]).accepted == 1
    assert log.view.pending_invites() == []
    joined = grown.join_event(newcomer, inv)  # bad's node still signs admissions
    assert reasons(log.append_received([joined])) == {joined["event_id"]: "unknown_author"}


def test_a_join_through_a_revoked_inviter_stored_first_is_deleted_with_its_author_events(grown: Community) -> None:
    log, bad, newcomer = grown.log, grown.members["bad"], keys.generate()
    inv = grown.invite(bad, newcomer)
    rev = revoke(grown, bad)  # the invite is in the frontier, the join is not
    joined = grown.join_event(newcomer, inv)
    said = chat(grown, newcomer)
    assert log.append_received([joined, said]).accepted == 2
    result = log.append_received([rev])
    assert sorted(result.purged) == sorted([joined["event_id"], said["event_id"]])
    assert not log.view.is_member(newcomer.node_id_full) and log.get(inv["event_id"]) == inv


def test_a_revoked_node_governs_nothing_and_cannot_rejoin(grown: Community) -> None:
    log, bad, m = grown.log, grown.members["bad"], grown.add_member("m")
    rev = revoke(grown, bad)
    promote = grown.governance(bad, "community.member.promoted",
                               {"target_node_id": m.node_id_full, "new_level": "trusted"}, [],
                               lamport=log.clock + 1)
    assert log.append_received([promote]).accepted == 1  # back-dated, before the revocation arrives
    assert log.view.level_of(m.node_id_full) == "trusted"
    assert log.append_received([rev]).purged == [promote["event_id"]]
    assert log.view.level_of(m.node_id_full) == "member"
    again = grown.invite(grown.root, keys.generate())  # the root may invite; not the revoked node
    rejoin = invited(grown, grown.root, bad)
    assert reasons(log.append_received([rejoin])) == {rejoin["event_id"]: "unauthorized"}
    assert log.get(again["event_id"]) is not None


def test_revocation_frontier_lists_own_events_and_joins_through_its_invites(grown: Community) -> None:
    log, bad, newcomer = grown.log, grown.members["bad"], keys.generate()
    inv = grown.invite(bad, newcomer)
    joined = grown.join_event(newcomer, inv)
    log.append_received([joined])
    own = {e["event_id"] for e in log.events(author=bad.node_id_full)}
    frontier = log.frontier(bad.node_id_full)
    assert frontier == sorted(own | {joined["event_id"]}) and inv["event_id"] in own


# ----------------------------------------------------------------------------- R4 demotion, co-signers

DEMOTED = "community.member.demoted"


def demote(c: Community, target: KeyPair, lamport: int | None = None) -> dict[str, Any]:
    """trusted -> member by the root with both trusted co-signers (3 of 3), with the
    frontier of the log now, leaving room below it for back-dating."""
    return c.governance(c.root, DEMOTED, {"target_node_id": target.node_id_full, "new_level": "member"},
                        [c.members["t1"], c.members["t2"]], lamport=lamport or c.log.clock + 10)


def trusted_puppet(c: Community, inviter: KeyPair, lamport: int) -> tuple[KeyPair, list[dict[str, Any]]]:
    """A back-dated invite at level trusted (a member may invite, but not above itself)
    and the puppet's join."""
    kp = keys.generate()
    c.keyring[inviter.node_id_full] = inviter
    inv = c.event(inviter, "community.member.invited", {
        "invitee_node_id": kp.node_id_full, "display_name": "p", "initial_level": "trusted",
        "expires_at": rfc3339(datetime.now(timezone.utc) + timedelta(hours=1))}, lamport=lamport)
    return kp, [inv, c.join_event(kp, inv, lamport=lamport + 1)]


def same_state(a: EventLog, b: EventLog) -> bool:
    return ids(a) == ids(b) and a.view.snapshot_state() == b.view.snapshot_state()


def test_a_demoted_member_cannot_back_date_its_old_rights(grown: Community) -> None:
    log, bad, m = grown.log, grown.members["bad"], grown.add_member("m")
    dem = demote(grown, bad)
    low = log.clock + 1  # between bad's join and its demotion
    kp, attack = trusted_puppet(grown, bad, low)
    promote = grown.governance(bad, "community.member.promoted",
                               {"target_node_id": m.node_id_full, "new_level": "trusted"}, [], lamport=low + 3)
    attack.append(promote)
    assert all(ev["lamport"] < dem["lamport"] for ev in attack)
    # Stored first (bad was trusted there): they count, until the demotion arrives.
    first = EventLog(log.path.with_name("first.sqlite"), grown.cid)
    first.append_received(log.events())
    assert first.append_received(attack).accepted == 3 and first.view.level_of(kp.node_id_full) == "trusted"
    result = first.append_received([dem])
    assert result.accepted == 1 and sorted(result.purged) == sorted(ev["event_id"] for ev in attack)
    assert not first.view.is_member(kp.node_id_full) and first.view.level_of(m.node_id_full) == "member"
    assert first.view.level_of(bad.node_id_full) == "member"
    # The demotion first: refused, and both nodes end the same.
    assert log.append_received([dem]).accepted == 1
    result = log.append_received(attack)
    assert result.accepted == 0 and reasons(result)[attack[0]["event_id"]] == "unauthorized"
    assert same_state(first, log)
    first.close()


def test_what_the_demoter_held_keeps_its_old_rights(grown: Community) -> None:
    """An invite at level trusted that bad issued while trusted, seen by the demoter, stays
    valid and redeemable in any order (the frontier)."""
    log, bad, newcomer = grown.log, grown.members["bad"], keys.generate()
    inv = grown.invite(bad, newcomer, level="trusted")
    dem = demote(grown, bad)
    assert inv["event_id"] in dem["data"]["frontier"]
    joined = grown.join_event(newcomer, inv)
    assert log.append_received([dem]).accepted == 1 and log.append_received([joined]).accepted == 1
    assert log.view.level_of(newcomer.node_id_full) == "trusted" and not log.view.invalid
    other = EventLog(log.path.with_name("other.sqlite"), grown.cid)
    late = (inv["event_id"], joined["event_id"], dem["event_id"])
    other.append_received([ev for ev in log.events() if ev["event_id"] not in late])
    other.append_received([dem])  # the demotion before the invite it names
    assert other.append_received([inv, joined]).accepted == 2
    assert same_state(other, log)
    other.close()


def test_a_demoted_member_promoted_again_has_its_rights_after_that(grown: Community) -> None:
    log, bad, m = grown.log, grown.members["bad"], grown.add_member("m")
    assert log.append_received([demote(grown, bad)]).accepted == 1
    again = grown.governance(grown.root, "community.member.promoted",
                             {"target_node_id": bad.node_id_full, "new_level": "trusted"}, [])
    assert log.append_received([again]).accepted == 1
    promote = grown.governance(bad, "community.member.promoted",
                               {"target_node_id": m.node_id_full, "new_level": "trusted"}, [])
    assert log.append_received([promote]).accepted == 1 and log.view.level_of(m.node_id_full) == "trusted"


@pytest.fixture
def two_of_three(grown: Community) -> Community:
    """Revocation needs 2 signatures; demotion still 3."""
    policy = {**grown.log.view.policy, "min_signatures_to_revoke": 2}
    grown.log.append_local(grown.root, "community.policy.updated", {"policy": policy})
    return grown


@pytest.mark.parametrize("fall", ["revoked", "demoted"])
def test_a_fallen_co_signer_counts_for_nothing_on_back_dated_events(two_of_three: Community, fall: str) -> None:
    """t2 (a legit trusted member, complicit) writes a revocation of t1 with bad's
    co-signature, placed before bad's revocation or demotion: bad's signature no longer
    counts, so the event is refused or deleted, and t1 stays a member."""
    c = two_of_three
    log, bad, t1, t2 = c.log, c.members["bad"], c.members["t1"], c.members["t2"]
    fallen = revoke(c, bad) if fall == "revoked" else demote(c, bad)
    back_dated = c.governance(t2, REVOKED, {"target_node_id": t1.node_id_full, "reason": "other"}, [bad],
                              lamport=fallen["lamport"] - 5)
    first = EventLog(log.path.with_name("first.sqlite"), c.cid)
    first.append_received(log.events())
    assert first.append_received([back_dated]).accepted == 1 and t1.node_id_full in first.view.revoked
    if fall == "revoked":  # built before: its frontier must not hold the back-dated event
        fallen = revoke(c, bad)
    result = first.append_received([fallen])
    assert result.accepted == 1 and back_dated["event_id"] in result.purged
    assert first.view.is_member(t1.node_id_full)
    assert log.append_received([fallen]).accepted == 1
    assert reasons(log.append_received([back_dated])) == {back_dated["event_id"]: "unauthorized"}
    assert same_state(first, log)
    first.close()


def test_a_co_signature_the_revoker_saw_still_counts(two_of_three: Community) -> None:
    c = two_of_three
    log, bad, t1, t2 = c.log, c.members["bad"], c.members["t1"], c.members["t2"]
    m = c.add_member("m")
    seen = c.governance(t2, REVOKED, {"target_node_id": m.node_id_full, "reason": "other"}, [bad])
    assert log.append_received([seen]).accepted == 1
    rev = revoke(c, bad)
    assert seen["event_id"] in rev["data"]["frontier"]
    assert log.append_received([rev]).accepted == 1 and m.node_id_full in log.view.revoked
    other = EventLog(log.path.with_name("other.sqlite"), c.cid)
    other.append_received([ev for ev in log.events() if ev["event_id"] not in (seen["event_id"], rev["event_id"])])
    other.append_received([rev])
    assert other.append_received([seen]).accepted == 1
    assert same_state(other, log)
    other.close()


def test_demotion_frontier_lists_governance_events_written_or_co_signed(two_of_three: Community) -> None:
    c = two_of_three
    log, bad, t2 = c.log, c.members["bad"], c.members["t2"]
    said = chat(c, bad)
    log.append_received([said])
    inv = c.invite(bad, keys.generate())
    m = c.add_member("m")
    co = c.governance(t2, REVOKED, {"target_node_id": m.node_id_full, "reason": "other"}, [bad])
    log.append_received([co])
    governance = {e["event_id"] for e in log.events(author=bad.node_id_full)
                  if e["event_type"] in GOVERNANCE_TYPES}
    assert log.frontier(bad.node_id_full, "demote") == sorted(governance | {co["event_id"]})
    assert inv["event_id"] in governance and said["event_id"] not in log.frontier(bad.node_id_full, "demote")
    assert {said["event_id"], co["event_id"]} <= set(log.frontier(bad.node_id_full, "revoke"))


# ----------------------------------------------------------------------------- R3 admission


def test_a_late_join_with_a_back_dated_clock_is_refused(community: Community) -> None:
    log, late = community.log, keys.generate()
    now = datetime.now(timezone.utc)
    inv = community.invite(community.root, late, expires_at=now - timedelta(hours=1))
    # The joiner claims it joined two hours ago; the inviter's node admitted it only now.
    joined = community.join_event(late, inv, now=now - timedelta(hours=2), admitted_at=now)
    assert reasons(log.append_received([joined])) == {joined["event_id"]: "unknown_author"}
    assert not log.view.is_member(late.node_id_full)


@pytest.mark.parametrize("how", ["forged_by_joiner", "by_another_member", "for_another_invitee",
                                 "for_another_invite", "tampered_time"])
def test_a_join_with_a_forged_admission_is_refused(community: Community, how: str) -> None:
    log, joiner, other = community.log, keys.generate(), community.add_member("other", "trusted")
    inv = community.invite(community.root, joiner)
    root, at = community.root, datetime.now(timezone.utc)
    admission = {
        "forged_by_joiner": {**build_admission(joiner, inv["event_id"], joiner.node_id_full, at), "by": root.node_id_full},
        "by_another_member": build_admission(other, inv["event_id"], joiner.node_id_full, at),
        "for_another_invitee": build_admission(root, inv["event_id"], other.node_id_full, at),
        "for_another_invite": build_admission(root, "01JD0000000000000000000000", joiner.node_id_full, at),
        "tampered_time": {**build_admission(root, inv["event_id"], joiner.node_id_full, at),
                          "at": rfc3339(at - timedelta(days=1))},
    }[how]
    joined = community.event(joiner, "community.member.joined", {
        "invite_event_id": inv["event_id"], "node_manifest": node_manifest_stub(joiner), "admission": admission})
    assert reasons(log.append_received([joined])) == {joined["event_id"]: "unknown_author"}


def test_a_join_without_admission_is_malformed(community: Community) -> None:
    joiner = keys.generate()
    inv = community.invite(community.root, joiner)
    good = community.join_event(joiner, inv)
    bare = joiner.sign({k: v for k, v in {**good, "data": {k: v for k, v in good["data"].items()
                                                           if k != "admission"}}.items() if k != "signature"})
    assert reasons(community.log.append_received([bare])) == {bare["event_id"]: "schema_unknown"}
    assert community.log.append_received([good]).accepted == 1


def test_genesis_join_is_self_admitted(community: Community) -> None:
    joined = community.log.events(event_types=["community.member.joined"])[0]
    admission = joined["data"]["admission"]
    assert admission["by"] == community.cid and admission["at"] <= community.log.events()[1]["data"]["expires_at"]


# ----------------------------------------------------------------------------- stored state


def test_reopening_after_a_purge_changes_nothing(grown: Community) -> None:
    log, bad = grown.log, grown.members["bad"]
    rev = revoke(grown, bad)
    _, events = puppet(grown, bad)
    log.append_received(events)
    log.append_received([rev])
    before, state = ids(log), log.view.snapshot_state()
    again = EventLog(log.path, grown.cid)
    assert ids(again) == before and again.view.snapshot_state() == state
    again.close()


def test_a_log_written_under_the_old_rules_is_cleaned_at_open(tmp_path: Path, root: KeyPair) -> None:
    """A join without admission (what older versions wrote) and its author's events."""
    log = EventLog(tmp_path / "events.sqlite", root.node_id_full)
    log.create_genesis(root, "Maple", None)
    old = keys.generate()
    inv = log.append_local(root, "community.member.invited", {
        "invitee_node_id": old.node_id_full, "display_name": "o", "initial_level": "member",
        "expires_at": rfc3339(datetime.now(timezone.utc) + timedelta(hours=1))})
    kept = log.events()
    log.close()
    legacy_join = old.sign({"schema_version": 1, "event_id": "01JD0000000000000000000009", "lamport": 5,
                            "wall_clock": "2026-11-26T10:00:00Z", "community_id": root.node_id_full,
                            "author": old.node_id_full, "event_type": "community.member.joined",
                            "data": {"invite_event_id": inv["event_id"], "node_manifest": {}}})
    legacy_chat = build_event(old, root.node_id_full, 6, "file.cid.unpinned", {"cid": "x"})
    conn = sqlite3.connect(tmp_path / "events.sqlite")
    for ev in (legacy_join, legacy_chat):
        conn.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?)", (
            ev["event_id"], ev["community_id"], 1, ev["lamport"], ev["wall_clock"], ev["author"],
            ev["event_type"], json.dumps(ev["data"]), ev["signature"], "2026-11-26T10:00:00Z"))
    conn.commit()
    conn.close()
    log = EventLog(tmp_path / "events.sqlite", root.node_id_full)
    assert log.events() == kept and not log.view.is_member(old.node_id_full)
    log.close()


def test_snapshots_carry_frontiers_and_restore_applies_them(grown: Community, tmp_path: Path) -> None:
    log, bad = grown.log, grown.members["bad"]
    rev = revoke(grown, bad)
    kp, events = puppet(grown, bad)
    assert log.append_received([rev]).accepted == 1
    for n in range(3):
        log.append_local(grown.root, "file.cid.unpinned", {"cid": str(n)})
    store = SnapshotStore(tmp_path / "snaps", grown.cid)
    snap = take_snapshot(log, grown.root, store, lag=1)
    revoked = snap["state"]["community"]["revoked"]
    assert [r["node_id"] for r in revoked] == [bad.node_id_full]
    assert revoked[0]["frontier"] == sorted(revoked[0]["frontier"]) and revoked[0]["frontier"]
    view = restore_view(store.latest(trusted_signers(log.view)), log)
    view.add(events)  # the restored view applies R1/R2 like the live one
    assert not view.is_member(kp.node_id_full) and set(view.invalid) == {e["event_id"] for e in events[:2]}
    assert snap["schema_version"] == 2


def test_the_view_of_the_stored_events_is_the_live_view(grown: Community) -> None:
    """F(F(S)) = F(S): rebuilding from what is stored finds nothing invalid."""
    log, bad = grown.log, grown.members["bad"]
    rev = revoke(grown, bad)
    _, events = puppet(grown, bad)
    log.append_received(events + [chat(grown, bad, lamport=7)])
    log.append_received([rev])
    view = CommunityView(grown.cid)
    view.add(log.events(event_types=GOVERNANCE_TYPES))
    view.head_lamport = log.head()
    assert view.invalid == {} and view.snapshot_state() == log.view.snapshot_state()
