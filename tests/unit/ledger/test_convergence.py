"""Property: whatever order and batches the events of a community arrive in, including an
attacker's (a revoked member's back-dated invite, puppet join, chat and promotion, a void
invite's join, a late join with a back-dated clock, a demoted member's back-dated invite
above its new level, a back-dated revocation co-signed by the revoked and the demoted node), every node ends with ONE stored event
set and ONE view, and what each node stores is always exactly what its view finds valid."""
from __future__ import annotations

import functools
import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearthnet.identity import keys
from hearthnet.identity.manifest import rfc3339
from hearthnet.ledger.events import GOVERNANCE_TYPES
from hearthnet.ledger.store import EventLog
from hearthnet.ledger.views import CommunityView
from tests.unit.ledger.conftest import Community, post_data
from tests.unit.ledger.test_views import random_history

Events = list[dict[str, Any]]


def _chat(c: Community, kp: keys.KeyPair, lamport: int | None = None, body: str = "hi") -> dict[str, Any]:
    return c.event(kp, "chat.message.sent", {"client_id": body, "recipient": c.cid, "body": body,
                                             "attachments": []}, lamport=lamport)


def _invite(c: Community, inviter: keys.KeyPair, invitee: keys.KeyPair, lamport: int | None = None,
            expires: timedelta = timedelta(hours=1)) -> dict[str, Any]:
    c.keyring[inviter.node_id_full] = inviter
    return c.event(inviter, "community.member.invited", {
        "invitee_node_id": invitee.node_id_full, "display_name": "x", "initial_level": "member",
        "expires_at": rfc3339(datetime.now(timezone.utc) + expires)}, lamport=lamport)


@functools.lru_cache(maxsize=1)
def universe() -> tuple[str, Events, dict[str, str]]:
    """(community id, every event, names of the attacker's events). The honest history is
    grown on a reference log; the attacker's events are crafted around it."""
    tmp = Path(tempfile.mkdtemp(prefix="hn-conv-"))
    root = keys.generate()
    log = EventLog(tmp / "reference.sqlite", root.node_id_full)
    log.create_genesis(root, "Maple", None)
    c = Community(log, root)
    t1, t2, bad, dm = (c.add_member(n, "trusted") for n in ("t1", "t2", "bad", "dm"))
    m = c.add_member("m")
    p1, p2, puppet, late = (keys.generate() for _ in range(4))
    honest = [_invite(c, bad, p1)]
    honest.append(c.join_event(p1, honest[0]))
    pending = _invite(c, bad, p2)
    expired = c.invite(root, late, expires_at=datetime.now(timezone.utc) - timedelta(hours=1))
    honest += [pending, _chat(c, bad, body="seen"), _chat(c, m), c.event(m, "market.post.created", post_data())]
    for ev in honest:
        assert log.append_received([ev]).rejected == 0, ev["event_type"]
    below = log.clock + 1  # lamports between bad's join and its revocation
    revoke = c.governance(root, "community.member.revoked",
                          {"target_node_id": bad.node_id_full, "reason": "compromised"}, [t1, t2],
                          lamport=log.clock + 20)
    assert log.append_received([revoke]).accepted == 1
    demote = c.governance(root, "community.member.demoted",
                          {"target_node_id": dm.node_id_full, "new_level": "member"}, [t1, t2],
                          lamport=log.clock + 20)
    assert log.append_received([demote]).accepted == 1
    promote = c.governance(root, "community.member.promoted",
                           {"target_node_id": m.node_id_full, "new_level": "trusted"}, [])
    assert log.append_received([promote, _chat(c, p1, body="after")]).accepted == 2
    puppet_invite = _invite(c, bad, puppet, lamport=below)
    dm_puppet = keys.generate()
    dm_invite = c.event(dm, "community.member.invited", {  # above a member's own level
        "invitee_node_id": dm_puppet.node_id_full, "display_name": "x", "initial_level": "trusted",
        "expires_at": rfc3339(datetime.now(timezone.utc) + timedelta(hours=1))}, lamport=below + 5)
    attack = {
        "puppet_invite": puppet_invite,
        "puppet_join": c.join_event(puppet, puppet_invite, lamport=below + 1),
        "puppet_chat": _chat(c, puppet, lamport=below + 2, body="puppet"),
        "back_dated_chat": _chat(c, bad, lamport=below + 3, body="back-dated"),
        "back_dated_promote": c.governance(bad, "community.member.promoted",
                                           {"target_node_id": m.node_id_full, "new_level": "trusted"}, [],
                                           lamport=below + 4),
        "demoted_trusted_invite": dm_invite,
        "demoted_puppet_join": c.join_event(dm_puppet, dm_invite, lamport=below + 6),
        # t2 (complicit) revokes t1 with the co-signatures of the revoked and the demoted node
        "fallen_co_signed": c.governance(t2, "community.member.revoked",
                                         {"target_node_id": t1.node_id_full, "reason": "other"}, [bad, dm],
                                         lamport=below + 7),
        "later_chat": _chat(c, bad, lamport=log.clock + 5, body="later"),
        "void_invite_join": c.join_event(p2, pending, lamport=log.clock + 6),
        "late_join": c.join_event(late, expired, now=datetime.now(timezone.utc) - timedelta(hours=3),
                                  lamport=log.clock + 7),
        "stranger_chat": _chat(c, keys.generate(), body="stranger"),
    }
    events = log.events() + list(attack.values())
    log.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return root.node_id_full, events, {ev["event_id"]: name for name, ev in attack.items()}


@functools.lru_cache(maxsize=8)
def random_universe(seed: int) -> tuple[str, Events]:
    """A random history (test_views.random_history: concurrent invites, joins, promotions,
    demotions, revocations, policy updates, posts) plus, for every node it revoked, what
    an attacker holding that node's key serves: a back-dated invite for a puppet, the
    puppet's join and post, and a back-dated post of its own."""
    tmp = Path(tempfile.mkdtemp(prefix="hn-conv-"))
    c, events = random_history(tmp, seed)
    extra: Events = []
    for node_id, rev in sorted(c.log.view.revoked.items()):
        bad = c.keyring.get(node_id)
        joins = [e["lamport"] for e in events if e["author"] == node_id and e["event_type"] == "community.member.joined"]
        if bad is None or not joins:
            continue
        low = min(joins) + 1
        puppet = keys.generate()
        inv = _invite(c, bad, puppet, lamport=low)
        extra += [inv, c.join_event(puppet, inv, lamport=low + 1),
                  c.event(puppet, "market.post.created", post_data(1), lamport=low + 2),
                  c.event(bad, "market.post.created", post_data(2), lamport=min(low, rev["lamport"] - 1) or 1)]
    c.log.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return c.cid, events + extra


def _open(tmp: str, name: str, cid: str) -> EventLog:
    log = EventLog(Path(tmp) / f"{name}.sqlite", cid)
    log._conn.execute("PRAGMA synchronous=OFF")  # speed only: durability is not under test here
    return log


def _ids(log: EventLog) -> set[str]:
    return set(log.ids_since(0))


def _state(log: EventLog) -> tuple[set[str], dict[str, Any]]:
    return _ids(log), log.view.snapshot_state()


def _check_settled(log: EventLog) -> None:
    """What is stored is exactly what the rules find valid: a view rebuilt from the
    stored events finds nothing invalid and equals the live one."""
    view = CommunityView(log.community_id)
    view.add(log.events(event_types=GOVERNANCE_TYPES))
    view.head_lamport = log.head()
    assert view.invalid == {} and view.snapshot_state() == log.view.snapshot_state()
    others = [ev for ev in log.events() if ev["event_type"] not in GOVERNANCE_TYPES]
    assert all(log.view.author_problem(ev) is None for ev in others)


def _deliver(log: EventLog, events: Events, cuts: list[int]) -> None:
    for start, end in zip([0, *cuts], [*cuts, len(events)]):
        if start < end:
            log.append_received(events[start:end])
            _check_settled(log)


@functools.lru_cache(maxsize=16)
def reference(seed: int | None = None) -> tuple[set[str], dict[str, Any]]:
    """Every event in one batch."""
    cid, events = universe()[:2] if seed is None else random_universe(seed)
    with tempfile.TemporaryDirectory() as tmp:
        log = _open(tmp, "all", cid)
        log.append_received(events)
        _check_settled(log)
        out = _state(log)
        log.close()
    return out


def test_the_reference_keeps_the_honest_history_and_none_of_the_attack() -> None:
    cid, events, attack = universe()
    stored, state = reference()
    assert stored == {ev["event_id"] for ev in events} - set(attack)
    revoked = [r["node_id"] for r in state["revoked"]]
    assert len(revoked) == 1 and len(state["members"]) == 6  # root, t1, t2, m (promoted), p1, dm
    levels = {m["node_id"]: m["level"] for m in state["members"]}
    assert sorted(levels.values()).count("trusted") == 3 and revoked[0] not in levels  # t1, t2, m


orders = st.lists(st.integers(0, 10**6), min_size=0, max_size=6)


def _converges(cid: str, events: Events, expected: tuple[set[str], dict[str, Any]],
               arrivals: list[tuple[Any, list[int]]]) -> None:
    """Each node gets every event in its own order and batches; then they gossip until
    nothing changes (they must agree, whatever each dropped on the way); then a peer that
    still holds everything syncs with both (both end at the one-batch reference)."""
    with tempfile.TemporaryDirectory() as tmp:
        nodes = []
        for n, (rng, cuts) in enumerate(arrivals):
            order = events[:]
            rng.shuffle(order)
            log = _open(tmp, f"n{n}", cid)
            _deliver(log, order, sorted({c % (len(order) + 1) for c in cuts}))
            nodes.append(log)
        for _ in range(10):
            before = [_ids(log) for log in nodes]
            for log in nodes:
                for other in nodes:
                    if other is not log:
                        log.append_received(other.events())
                        _check_settled(log)
            if [_ids(log) for log in nodes] == before:
                break
        assert all(_state(log) == _state(nodes[0]) for log in nodes)
        for log in nodes:
            log.append_received(events)
            _check_settled(log)
            assert _state(log) == expected
            log.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), orders, st.randoms(use_true_random=False), orders)
def test_any_arrival_order_converges(rng1: Any, cuts1: list[int], rng2: Any, cuts2: list[int]) -> None:
    cid, events, _ = universe()
    _converges(cid, events, reference(), [(rng1, cuts1), (rng2, cuts2)])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 3), st.randoms(use_true_random=False), orders, st.randoms(use_true_random=False), orders)
def test_any_arrival_order_of_a_generated_history_converges(seed: int, rng1: Any, cuts1: list[int],
                                                            rng2: Any, cuts2: list[int]) -> None:
    cid, events = random_universe(seed)
    _converges(cid, events, reference(seed), [(rng1, cuts1), (rng2, cuts2)])
