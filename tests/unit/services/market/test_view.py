"""The market view: events folded in any order end in one state; snapshot and restore
round-trip to an equal view; status (active, fulfilled, expired by reason or by time);
authorship at the view level; malformed posts left out; the queries."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from hearthnet.identity import keys
from hearthnet.identity.manifest import rfc3339
from hearthnet.ids import new_ulid
from hearthnet.services.market.view import CREATED, EXPIRED, UPDATED, MarketView

ALICE, BOB, MOD = (keys.generate().node_id_full for _ in range(3))
T0 = datetime(2026, 12, 1, 9, 0, 0, tzinfo=timezone.utc)


def created(author: str, lamport: int, n: int = 0, **data: Any) -> dict[str, Any]:
    body = {"client_id": f"c{n}", "category": "offer", "title": f"Generator {n}", "body": "petrol, 2 kW",
            "location": None, "tags": ["power"], "ttl_seconds": 3600, **data}
    return {"event_id": new_ulid(), "lamport": lamport, "author": author, "event_type": CREATED,
            "wall_clock": rfc3339(T0), "data": body}


def updated(author: str, lamport: int, target: dict, **fields: Any) -> dict[str, Any]:
    return {"event_id": new_ulid(), "lamport": lamport, "author": author, "event_type": UPDATED,
            "wall_clock": rfc3339(T0), "data": {"client_id": new_ulid(), "target_event_id": target["event_id"],
                                                 "fields": fields}}


def expired(author: str, lamport: int, target: dict, reason: str) -> dict[str, Any]:
    return {"event_id": new_ulid(), "lamport": lamport, "author": author, "event_type": EXPIRED,
            "wall_clock": rfc3339(T0), "data": {"client_id": new_ulid(), "target_event_id": target["event_id"],
                                                 "reason": reason}}


def view_of(events) -> MarketView:
    v = MarketView()
    for ev in events:
        v.apply(ev)
    return v


def busy_history() -> list[dict[str, Any]]:
    a0, a1, b0 = created(ALICE, 3, 0), created(ALICE, 5, 1, quantity=3), created(BOB, 5, 2, category="request")
    return [
        a0, a1, b0,
        updated(ALICE, 6, a0, body="diesel now"), updated(ALICE, 9, a0, body="sold the diesel one", title="Gen"),
        updated(ALICE, 9, a0, tags=["power", "fuel"]),  # same lamport: event id breaks the tie
        updated(BOB, 12, a0, title="hacked"),  # not the author: left out
        expired(MOD, 7, a1, "stale"), expired(ALICE, 4, a1, "fulfilled"),  # a person's reason beats stale
        expired(MOD, 8, b0, "stale"), expired(ALICE, 10, b0, "stale"),  # two sweepers: one winner
        expired(BOB, 11, a0, "user_request"),  # user_request by a non-author: left out
        created(BOB, 2, 9, category="weapons"),  # malformed: left out everywhere
        a0,  # a second copy
    ]


def test_any_order_of_the_same_events_ends_equal():
    history = busy_history()
    reference = view_of(history)
    rng = random.Random(9)
    for _ in range(50):
        shuffled = history[:]
        rng.shuffle(shuffled)
        other = view_of(shuffled)
        assert other == reference
        now = T0 + timedelta(minutes=1)
        assert [p.to_wire(now) for p in other.list(status="all", now=now)] == \
               [p.to_wire(now) for p in reference.list(status="all", now=now)]


def test_updates_are_last_writer_wins_and_only_by_the_author():
    history = busy_history()
    v = view_of(history)
    a0 = v.get(history[0]["event_id"])
    assert a0.body == "sold the diesel one" and a0.title == "Gen" and a0.tags == ["power", "fuel"]
    assert a0.changed_lamport == 9 and a0.expiry_reason is None  # the user_request by bob counts for nothing


def test_status_fulfilled_beats_stale_and_sweepers_dedup():
    history = busy_history()
    v = view_of(history)
    now = T0 + timedelta(minutes=1)
    assert v.get(history[1]["event_id"]).status(now) == "fulfilled"
    b0 = v.get(history[2]["event_id"])
    assert b0.status(now) == "expired" and b0.expiry_reason == "stale"
    assert v.expiry_of(b0.event_id)[1] == 10  # LWW among the sweepers' expiries
    assert v.get(history[-2]["event_id"]) is None and len(v) == 3  # the malformed post


def test_status_by_time_and_by_reason():
    post, other = created(ALICE, 1, 0), created(ALICE, 2, 1)
    v = view_of([post, other, expired(ALICE, 3, other, "withdrawn")])
    p = v.get(post["event_id"])
    assert p.status(T0 + timedelta(seconds=3599)) == "active"
    assert p.status(T0 + timedelta(seconds=3600)) == "expired" and p.expiry_reason is None
    assert v.get(other["event_id"]).status(T0) == "expired"
    assert [x.event_id for x in v.past_due(T0 + timedelta(hours=2))] == [post["event_id"]]
    assert v.past_due(T0) == []


def test_snapshot_restore_round_trips_to_an_equal_view():
    history = busy_history()
    v = view_of(history)
    restored = MarketView()
    restored.restore_state(v.snapshot_state())
    assert restored == v and restored.snapshot_state() == v.snapshot_state()
    assert restored.max_lamport() == v.max_lamport() == 12
    now = T0 + timedelta(minutes=1)
    assert [p.to_wire(now) for p in restored.list(status="all", now=now)] == \
           [p.to_wire(now) for p in v.list(status="all", now=now)]
    more = [created(BOB, 20, 5), expired(ALICE, 21, history[0], "fulfilled")]
    for ev in more:
        v.apply(ev)
        restored.apply(ev)
    assert restored == v == view_of(history + more)
    with pytest.raises(ValueError):
        MarketView().restore_state({**v.snapshot_state(), "version": 99})


def test_events_before_their_post_count_once_it_arrives():
    post = created(ALICE, 1)
    v = view_of([updated(ALICE, 2, post, body="later"), expired(ALICE, 3, post, "fulfilled")])
    assert len(v) == 0
    v.apply(post)
    p = v.get(post["event_id"])
    assert p.body == "later" and p.status(T0) == "fulfilled"


def test_list_filters_order_and_delta():
    a, b, c = created(ALICE, 1, 0), created(BOB, 2, 1, category="request", tags=["Water"]), created(ALICE, 3, 2)
    v = view_of([a, b, c, expired(ALICE, 4, a, "fulfilled")])
    now = T0 + timedelta(minutes=1)
    assert [p.event_id for p in v.list(now=now)] == [c["event_id"], b["event_id"]]  # newest first, active only
    assert [p.event_id for p in v.list(category="request", now=now)] == [b["event_id"]]
    assert [p.event_id for p in v.list(tags=["water"], now=now)] == [b["event_id"]]
    assert [p.event_id for p in v.list(status="fulfilled", now=now)] == [a["event_id"]]
    assert [p.event_id for p in v.list(status="all", since_lamport=2, now=now)] == [c["event_id"], a["event_id"]]
    assert len(v.list(status="all", limit=2, now=now)) == 2
    assert [p.event_id for p in v.active(now)] == [c["event_id"], b["event_id"]]
    assert v.by_client(ALICE, CREATED, "c0") == (a["event_id"], 1) and v.by_client(BOB, CREATED, "c0") is None
    assert v.resolve(c["event_id"].lower()) == [c["event_id"]]
    assert len(v.resolve(c["event_id"][:6])) == 3  # made in one millisecond: one prefix


@pytest.mark.parametrize("bad", [{"category": "weapons"}, {"title": ""}, {"title": "x" * 201}, {"ttl_seconds": 0},
                                 {"tags": ["ok"] * 11}, {"tags": [3]}, {"quantity": 0}, {"quantity": True},
                                 {"location": {"lat": 91, "lng": 0}}, {"body": "x" * 4001}])
def test_malformed_posts_from_peers_are_left_out(bad):
    ev = created(BOB, 1, **bad)
    v = view_of([ev, updated(BOB, 2, ev, body="x")])
    assert len(v) == 0 and v.get(ev["event_id"]) is None


def test_an_invalid_update_field_is_ignored():
    post = created(ALICE, 1)
    v = view_of([post, updated(ALICE, 2, post, category="weapons", quantity=4, nonsense=1)])
    p = v.get(post["event_id"])
    assert p.category == "offer" and p.quantity == 4
