"""Ranged digests of a real EventLog (ledger/digest.py): equal for the same events in a
range whatever their storage order, read through the lamport index, and the request
checks every caller of `community.log.digest` / `/sync/v1/digest` goes through."""
from __future__ import annotations

import pytest

from hearthnet.errors import HearthNetError
from hearthnet.ledger.digest import MAX_DIGEST_RANGES, parse_ranges, range_hash, split
from hearthnet.ledger.store import EventLog

from .conftest import Community, post_data


def test_digests_count_and_hash_each_range_in_replay_order(community: Community) -> None:
    log = community.log
    for i in range(6):
        log.append_local(community.root, "market.post.created", post_data(i))
    head = log.head()
    every = log.ids_since(0)
    whole, = log.range_digests([(0, head)])
    assert whole["count"] == len(every) and whole["hash"] == range_hash(every)
    parts = log.range_digests(split(0, head, 3))
    assert sum(p["count"] for p in parts) == len(every)
    assert log.ids_in_ranges(split(0, head, 3)) == every  # replay order across the ranges
    empty, = log.range_digests([(head + 1, head + 100)])
    assert empty["count"] == 0 and empty["hash"] == range_hash([])


def test_the_same_events_stored_in_another_order_give_the_same_digest(community: Community, tmp_path) -> None:
    log = community.log
    bob = community.add_member("bob")
    late = community.event(bob, "market.post.created", post_data(1), lamport=log.clock + 1)
    mine = log.append_local(community.root, "market.post.created", post_data(2))  # same lamport as `late`
    log.append_received([late])
    other = EventLog(tmp_path / "other.sqlite", community.cid)
    try:
        events = log.events()
        assert other.append_received(events[:-2] + [events[-1], events[-2]]).accepted == len(events)
        ranges = split(0, log.head(), 4)
        assert other.range_digests(ranges) == log.range_digests(ranges)
        assert mine["lamport"] == late["lamport"]
    finally:
        other.close()


def test_the_digest_query_reads_the_lamport_index(community: Community) -> None:
    plan = community.log._conn.execute(
        "EXPLAIN QUERY PLAN SELECT event_id FROM events WHERE community_id = ? AND lamport BETWEEN ? AND ? "
        "ORDER BY lamport, event_id", (community.cid, 0, 10)).fetchall()
    assert any("COVERING INDEX events_by_lamport" in str(row) for row in plan), plan


@pytest.mark.parametrize("bad", [
    None, [], "0-9", {"lamport_lo": 0, "lamport_hi": 1}, [[0, 1]],
    [{"lamport_lo": 0}], [{"lamport_lo": 0, "lamport_hi": 1, "more": 1}],
    [{"lamport_lo": 2, "lamport_hi": 1}], [{"lamport_lo": -1, "lamport_hi": 1}],
    [{"lamport_lo": 0, "lamport_hi": 2**63}], [{"lamport_lo": 0, "lamport_hi": "9"}],
    [{"lamport_lo": True, "lamport_hi": 1}], [{"lamport_lo": 0.0, "lamport_hi": 1}],
    [{"lamport_lo": 0, "lamport_hi": 5}, {"lamport_lo": 5, "lamport_hi": 9}],  # overlapping
    [{"lamport_lo": 6, "lamport_hi": 9}, {"lamport_lo": 0, "lamport_hi": 5}],  # descending
    [{"lamport_lo": i, "lamport_hi": i} for i in range(MAX_DIGEST_RANGES + 1)],  # too many
], ids=repr)
def test_malformed_or_oversized_range_requests_are_bad_request(bad) -> None:
    with pytest.raises(HearthNetError) as err:
        parse_ranges(bad)
    assert err.value.code == "bad_request"


def test_split_covers_the_range_with_disjoint_ascending_parts() -> None:
    for lo, hi, n in ((0, 0, 4), (0, 3, 4), (0, 10, 4), (5, 1000, 4), (7, 9, 16)):
        parts = split(lo, hi, n)
        assert 1 <= len(parts) <= n and parts[0][0] == lo and parts[-1][1] == hi
        assert all(a[1] + 1 == b[0] for a, b in zip(parts, parts[1:]))
        assert parse_ranges([{"lamport_lo": a, "lamport_hi": b} for a, b in parts]) == parts
