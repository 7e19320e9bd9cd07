from __future__ import annotations

import hashlib
import os
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hearthnet.identity import keys
from hearthnet.identity.keys import sign_payload
from hearthnet.identity.manifest import verify_community_manifest
from hearthnet.ledger.errors import LedgerError
from hearthnet.ledger.events import build_event, sort_key
from hearthnet.ledger.store import EVENT_COLUMNS, MAX_LAMPORT_JUMP, EventLog, check_file
from tests.unit.ledger.conftest import Community, post_data


def stored_ids(log: EventLog) -> set[str]:
    return {ev["event_id"] for ev in log.events()}


def reasons(result) -> dict[str, str]:
    return {r["event_id"]: r["reason"] for r in result.rejected_reasons}


# ----------------------------------------------------------------------------- file & schema


def test_new_log_has_the_spec_schema_wal_and_full_sync(tmp_path: Path, root) -> None:
    log = EventLog(tmp_path / "events.sqlite", root.node_id_full)
    assert log._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert log._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    log.close()
    conn = sqlite3.connect(tmp_path / "events.sqlite")
    cols = [r[1] for r in conn.execute("PRAGMA table_info(events)")]
    assert tuple(cols) == EVENT_COLUMNS
    assert [r[1] for r in conn.execute("PRAGMA table_info(clock)")] == ["community_id", "lamport"]
    indexes = {r[1]: [c[2] for c in conn.execute(f"PRAGMA index_info({r[1]})")]
               for r in conn.execute("PRAGMA index_list(events)") if not r[1].startswith("sqlite_")}
    assert indexes == {"events_by_lamport": ["community_id", "lamport", "event_id"],
                       "events_by_type": ["community_id", "event_type", "lamport"]}
    conn.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.sqlite"]  # no temp file left


def test_genesis_writes_three_events_at_lamports_1_to_3(community: Community) -> None:
    log = community.log
    events = log.events()
    assert [(e["lamport"], e["event_type"]) for e in events] == [
        (1, "community.created"), (2, "community.member.invited"), (3, "community.member.joined")]
    assert events[2]["data"]["invite_event_id"] == events[1]["event_id"]
    assert events[1]["data"]["initial_level"] == "anchor"
    assert log.clock == 3 and log.head() == 3 and log.count() == 3
    assert log.view.level_of(community.cid) == "anchor" and log.view.name == "Maple Street"
    verify_community_manifest(log.view.manifest(community.root))
    with pytest.raises(LedgerError) as err:
        log.create_genesis(community.root, "Again", None)
    assert err.value.code == "bad_request" and log.count() == 3


def test_genesis_needs_the_root_key(tmp_path: Path, root) -> None:
    log = EventLog(tmp_path / "events.sqlite", root.node_id_full)
    with pytest.raises(LedgerError) as err:
        log.create_genesis(keys.generate(), "X", None)
    assert err.value.code == "unauthorized" and log.count() == 0


# ----------------------------------------------------------------------------- Lamport


def test_local_append_ticks_the_clock_and_persists_it(community: Community, tmp_path: Path) -> None:
    log = community.log
    a = log.append_local(community.root, "market.post.created", post_data(1))
    b = log.append_local(community.root, "market.post.created", post_data(2))
    assert (a["lamport"], b["lamport"]) == (4, 5) and log.clock == 5
    log.close()
    again = EventLog(tmp_path / "events.sqlite", community.cid)
    assert again.clock == 5 and again.head() == 5
    assert again.append_local(community.root, "file.cid.unpinned", {"cid": "x"})["lamport"] == 6
    again.close()


def test_receive_sets_clock_to_max_plus_one_per_event(community: Community) -> None:
    log, peer = community.log, community.add_member("peer")
    assert log.clock == 6  # invite (5) + joined received at 5 -> max(5, 5) + 1
    far = [community.event(peer, "file.cid.unpinned", {"cid": str(n)}, lamport=n) for n in (20, 21)]
    result = log.append_received(far)
    assert result.accepted == 2 and result.new_head_lamport == 21
    assert log.clock == 22  # max(6, 20) + 1 = 21, then max(21, 21) + 1 = 22
    late = community.event(peer, "file.cid.unpinned", {"cid": "late"}, lamport=8)
    log.append_received([late])
    assert log.clock == 23 and log.head() == 21  # an old lamport still bumps the clock once
    assert log.append_local(community.root, "file.cid.unpinned", {"cid": "mine"})["lamport"] == 24


def _fail_clock_updates(log: EventLog) -> None:
    log._conn.execute("CREATE TRIGGER no_clock BEFORE UPDATE ON clock BEGIN SELECT RAISE(ABORT, 'boom'); END")


def test_insert_and_clock_share_one_transaction(community: Community) -> None:
    log = community.log
    _fail_clock_updates(log)
    with pytest.raises(LedgerError):
        log.append_local(community.root, "market.post.created", post_data())
    assert log.count() == 3 and log.clock == 3
    assert log._conn.execute("SELECT lamport FROM clock").fetchone()[0] == 3


def test_a_failed_batch_stores_nothing_and_rolls_the_view_back(community: Community) -> None:
    log, newcomer = community.log, keys.generate()
    invite = community.invite(community.root, newcomer)
    _fail_clock_updates(log)
    joined = community.join_event(newcomer, invite)
    with pytest.raises(LedgerError):
        log.append_received([joined])
    assert log.get(joined["event_id"]) is None
    assert not log.view.is_member(newcomer.node_id_full)  # the view follows the database
    log._conn.execute("DROP TRIGGER no_clock")
    assert log.append_received([joined]).accepted == 1 and log.view.is_member(newcomer.node_id_full)


# ----------------------------------------------------------------------------- rejections


def test_every_rejection_reason_and_nothing_bad_is_stored(community: Community) -> None:
    log = community.log
    member = community.add_member("member")
    stranger = keys.generate()
    good = community.event(member, "market.post.created", post_data(1))
    tampered = community.event(member, "market.post.created", post_data(2))
    tampered["data"]["title"] = "changed after signing"
    wrong_key = sign_payload({**community.event(stranger, "file.cid.unpinned", {"cid": "w"}),
                              "author": member.node_id_full}, stranger)
    unknown_type = sign_payload({**community.event(member, "file.cid.unpinned", {"cid": "u"}),
                                 "event_type": "file.cid.teleported"}, member)
    non_member = community.event(stranger, "file.cid.unpinned", {"cid": "s"})
    # The bound moves with the head as the batch applies (good lands first): stay past it.
    far = community.event(member, "file.cid.unpinned", {"cid": "f"}, lamport=log.head() + MAX_LAMPORT_JUMP + 10)
    other_community = build_event(member, stranger.node_id_full, 9, "file.cid.unpinned", {"cid": "o"})
    batch = [good, tampered, wrong_key, unknown_type, non_member, far, other_community, "not an event"]
    result = log.append_received(batch)
    assert result.accepted == 1 and result.rejected == 7 and result.duplicates == 0
    assert reasons(result) == {
        tampered["event_id"]: "invalid_signature", wrong_key["event_id"]: "invalid_signature",
        unknown_type["event_id"]: "schema_unknown", non_member["event_id"]: "unknown_author",
        far["event_id"]: "lamport_too_far", other_community["event_id"]: "community_mismatch",
        None: "schema_unknown"}
    assert stored_ids(log) & {e["event_id"] for e in batch[1:-1]} == set()
    assert log.get(good["event_id"]) == good


def test_lamport_bound_follows_the_head(community: Community) -> None:
    log, member = community.log, community.add_member("m")
    at_bound = community.event(member, "file.cid.unpinned", {"cid": "b"}, lamport=log.head() + MAX_LAMPORT_JUMP)
    assert log.append_received([at_bound]).accepted == 1


def test_join_with_a_valid_invite_is_accepted(community: Community) -> None:
    log, newcomer = community.log, keys.generate()
    invite = community.invite(community.root, newcomer, level="trusted")
    joined = community.join_event(newcomer, invite)
    post = community.event(newcomer, "market.post.created", post_data(), lamport=joined["lamport"] + 1)
    result = log.append_received([post, joined])  # the batch is applied in replay order
    assert result.accepted == 2, result
    assert log.view.level_of(newcomer.node_id_full) == "trusted"
    assert log.view.members[newcomer.node_id_full]["added_by"] == community.cid
    assert log.view.pending_invites() == []


def test_join_with_an_expired_invite_is_rejected(community: Community) -> None:
    log, newcomer = community.log, keys.generate()
    now = datetime.now(timezone.utc)
    invite = community.invite(community.root, newcomer, expires_at=now - timedelta(minutes=1))
    joined = community.join_event(newcomer, invite, now=now, admitted_at=now)
    result = log.append_received([joined])
    assert reasons(result) == {joined["event_id"]: "unknown_author"} and log.get(joined["event_id"]) is None
    # Judged on the inviter's admission, not on "now": admitted in time, synced late, accepted.
    in_time = community.join_event(newcomer, invite, now=now, admitted_at=now - timedelta(minutes=2))
    assert log.append_received([in_time]).accepted == 1


@pytest.mark.parametrize("case", ["not_for_me", "unknown_invite", "used_twice"])
def test_join_needs_an_unused_invite_addressed_to_the_author(community: Community, case: str) -> None:
    log, newcomer, other = community.log, keys.generate(), keys.generate()
    invite = community.invite(community.root, other if case == "not_for_me" else newcomer)
    if case == "unknown_invite":
        invite = {**invite, "event_id": "01JD0000000000000000000000"}
    if case == "used_twice":
        assert log.append_received([community.join_event(newcomer, invite)]).accepted == 1
    again = community.join_event(newcomer, invite)
    expected = "unauthorized" if case == "used_twice" else "unknown_author"
    assert reasons(log.append_received([again])) == {again["event_id"]: expected}


def test_a_revoked_author_keeps_only_its_frontier(community: Community) -> None:
    log = community.log
    t1 = community.add_member("t1", "trusted")
    t2 = community.add_member("t2", "trusted")
    bad = community.add_member("bad")
    held = community.event(bad, "file.cid.unpinned", {"cid": "held"})
    assert log.append_received([held]).accepted == 1
    # Written before the revocation but never seen by the revoker: not in the frontier.
    unseen = community.event(bad, "file.cid.unpinned", {"cid": "unseen"}, lamport=log.clock)
    revoke = community.governance(community.root, "community.member.revoked",
                                  {"target_node_id": bad.node_id_full, "reason": "compromised"}, [t1, t2])
    assert held["event_id"] in revoke["data"]["frontier"]
    assert log.append_received([revoke]).accepted == 1
    assert bad.node_id_full in log.view.revoked and not log.view.is_member(bad.node_id_full)
    after = community.event(bad, "file.cid.unpinned", {"cid": "after"})
    same = community.event(bad, "file.cid.unpinned", {"cid": "same"}, lamport=revoke["lamport"])
    result = log.append_received([unseen, after, same])
    assert result.accepted == 0 and log.get(held["event_id"]) == held
    assert reasons(result) == {eid: "revoked_author" for eid in (unseen["event_id"], after["event_id"], same["event_id"])}


def test_revoke_needs_three_trusted_signatures(community: Community) -> None:
    t1 = community.add_member("t1", "trusted")
    plain = community.add_member("plain")
    target = community.add_member("target")
    short = community.governance(community.root, "community.member.revoked",
                                 {"target_node_id": target.node_id_full, "reason": "inactive"}, [t1, plain])
    by_member = community.governance(plain, "community.member.revoked",
                                     {"target_node_id": target.node_id_full, "reason": "inactive"},
                                     [community.root, t1, plain])
    result = community.log.append_received([short, by_member])
    assert set(reasons(result).values()) == {"unauthorized"} and result.accepted == 0


def test_promote_needs_one_trusted_signature_demote_three(community: Community) -> None:
    log = community.log
    m = community.add_member("m")
    promote = community.governance(community.root, "community.member.promoted",
                                   {"target_node_id": m.node_id_full, "new_level": "trusted"}, [])
    assert log.append_received([promote]).accepted == 1 and log.view.level_of(m.node_id_full) == "trusted"
    demote = community.governance(community.root, "community.member.demoted",
                                  {"target_node_id": m.node_id_full, "new_level": "member"}, [m])
    assert reasons(log.append_received([demote])) == {demote["event_id"]: "unauthorized"}
    t2 = community.add_member("t2", "trusted")
    demote = community.governance(community.root, "community.member.demoted",
                                  {"target_node_id": m.node_id_full, "new_level": "member"}, [t2, m])
    assert log.append_received([demote]).accepted == 1 and log.view.level_of(m.node_id_full) == "member"


def test_local_append_refuses_what_this_node_may_not_author(community: Community) -> None:
    log, member = community.log, community.add_member("m")
    stranger = keys.generate()
    policy = dict(log.view.policy)
    cases = [(community.root, "community.created", {"name": "X", "founder_node_id": community.cid, "policy": policy}),
             (member, "community.policy.updated", {"policy": policy}),
             (member, "community.member.invited", {"invitee_node_id": stranger.node_id_full, "display_name": "s",
                                                   "initial_level": "anchor", "expires_at": "2099-01-01T00:00:00Z"}),
             (member, "node.manifest.updated", {"manifest": {"node_id": community.cid}}),
             (stranger, "market.post.created", post_data())]
    for kp, event_type, data in cases:
        with pytest.raises(LedgerError) as err:
            log.append_local(kp, event_type, data)
        assert err.value.code == "unauthorized", event_type
    with pytest.raises(LedgerError) as err:
        log.append_local(member, "market.post.created", {"title": "only"})
    assert err.value.code == "bad_request"
    assert log.count() == 5  # genesis + invite + join


# ----------------------------------------------------------------------------- duplicates & order


def test_duplicates_are_neither_accepted_nor_rejected(community: Community) -> None:
    log, member = community.log, community.add_member("m")
    batch = [community.event(member, "file.cid.unpinned", {"cid": str(n)}) for n in range(3)]
    first = log.append_received(batch + batch[:1])
    assert (first.accepted, first.rejected, first.duplicates) == (3, 0, 1)
    clock, count = log.clock, log.count()
    second = log.append_received(batch + log.events()[:3])
    assert (second.accepted, second.rejected, second.duplicates) == (0, 0, 6)
    assert log.clock == clock and log.count() == count  # a duplicate changes nothing
    forged = sign_payload({**batch[0], "data": {"cid": "evil"}}, member)  # same id, other content
    assert log.append_received([forged]).duplicates == 1
    assert log.get(batch[0]["event_id"]) == batch[0]


def test_a_valid_copy_after_a_bad_copy_in_one_batch_is_kept(community: Community) -> None:
    member = community.add_member("m")
    ev = community.event(member, "file.cid.unpinned", {"cid": "x"})
    bad = {**ev, "signature": "ed25519:" + "A" * 86}
    result = community.log.append_received([bad, ev])
    assert result.accepted == 1 and reasons(result) == {ev["event_id"]: "invalid_signature"}


def test_events_come_back_in_lamport_then_event_id_order_with_filters(community: Community) -> None:
    log, member = community.log, community.add_member("m")
    tied = [community.event(member, "file.cid.unpinned", {"cid": str(n)}, lamport=50) for n in range(5)]
    other = community.event(member, "market.post.created", post_data(), lamport=40)
    log.append_received(list(reversed(tied)) + [other])
    everything = log.events()
    assert everything == sorted(everything, key=sort_key) and len(everything) == log.count() == 11
    assert [e["event_id"] for e in log.events(since_lamport=40)] == sorted(e["event_id"] for e in tied)
    assert log.ids_since(40) == [e["event_id"] for e in log.events(since_lamport=40)]
    assert [e["lamport"] for e in log.events(event_types=["market.post.created"])] == [40]
    assert {e["author"] for e in log.events(author=member.node_id_full)} == {member.node_id_full}
    assert len(log.events(author=member.node_id_full)) == 7  # joined + 6
    assert log.events(limit=2) == everything[:2]
    ids = [tied[3]["event_id"], everything[0]["event_id"], "01JD0000000000000000000000"]
    assert log.events(ids=ids) == [everything[0], log.get(tied[3]["event_id"])]
    assert log.events(ids=ids, limit=1) == [everything[0]]
    assert log.heads_by_type()["file.cid.unpinned"] == 50 and log.head() == 50


# ----------------------------------------------------------------------------- corruption


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage_header":
        path.write_bytes(os.urandom(100) + data[100:])
    elif how == "garbage_page":
        mid = len(data) // 2
        path.write_bytes(data[:mid] + os.urandom(4096) + data[mid + 4096:])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "foreign":
        path.unlink()
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE notes (x)")
        conn.commit()
        conn.close()


@pytest.mark.parametrize("how", ["truncated", "garbage_header", "garbage_page", "empty", "foreign"])
def test_damaged_file_is_detected_and_left_byte_identical(tmp_path: Path, root, how: str) -> None:
    path = tmp_path / "events.sqlite"
    log = EventLog(path, root.node_id_full)
    log.create_genesis(root, "Maple", None)
    for n in range(1500):  # several pages, so a damaged page in the middle hits real data
        log.append_local(root, "file.cid.unpinned", {"cid": f"{n:04d}" + "x" * 200})
    log.close()
    _damage(path, how)
    before, inode = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_ino
    for attempt in (lambda: EventLog(path, root.node_id_full), lambda: check_file(path)):
        with pytest.raises(LedgerError) as err:
            attempt()
        assert err.value.code == "db_corrupt" and str(path) in err.value.message
        assert "\n" not in err.value.message and "left untouched" in err.value.message
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before and path.stat().st_ino == inode


def test_check_integrity_on_an_open_log(community: Community) -> None:
    community.log.check_integrity()
    assert check_file(community.log.path) == {"count": 3, "head": 3}
