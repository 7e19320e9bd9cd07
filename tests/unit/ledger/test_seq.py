"""The local storage order (`seq`): what live feeds resume by."""
from __future__ import annotations

import sqlite3

from hearthnet.ledger.store import EventLog
from tests.unit.ledger.conftest import Community, post_data


def test_seq_follows_storage_order_not_lamport(community: Community) -> None:
    log = community.log
    bob = community.add_member("bob")
    start = log.seq
    high = log.append_local(community.root, "market.post.created", post_data(1))
    low = community.event(bob, "market.post.created", post_data(2), lamport=2)  # an old event, received late
    result = log.append_received([low])
    assert result.accepted == 1 and result.seqs == [start + 2]
    rows = log.events_after(start)
    assert [(s, e["event_id"]) for s, e in rows] == [(start + 1, high["event_id"]), (start + 2, low["event_id"])]
    assert [e["event_id"] for e in log.events(since_lamport=0)][-2:] != [high["event_id"], low["event_id"]]
    assert log.events_after(start, ["market.post.created"], limit=1) == rows[:1]
    assert log.events_after(start + 2) == []


def test_a_seq_is_never_given_out_twice_even_after_the_newest_rows_are_deleted(community: Community) -> None:
    log = community.log
    ev = log.append_local(community.root, "market.post.created", post_data(1))
    seq = log.seq
    path = log.path
    log.close()
    conn = sqlite3.connect(path)  # what a rule-5 purge does to the newest row
    conn.execute("DELETE FROM events WHERE event_id = ?", (ev["event_id"],))
    conn.commit()
    conn.close()
    reopened = EventLog(path, community.cid)
    try:
        assert reopened.seq == seq
        reopened.append_local(community.root, "market.post.created", post_data(2))
        assert reopened.seq == seq + 1 and [s for s, _ in reopened.events_after(seq - 1)] == [seq + 1]
    finally:
        reopened.close()


def test_a_log_written_before_seqs_counts_from_its_rowids(community: Community) -> None:
    log = community.log
    log.append_local(community.root, "market.post.created", post_data(1))
    count, path = log.count(), log.path
    log.close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE event_seq")
    conn.commit()
    conn.close()
    reopened = EventLog(path, community.cid)
    try:
        assert reopened.seq == count
        assert [s for s, _ in reopened.events_after(0)] == list(range(1, count + 1))
    finally:
        reopened.close()
