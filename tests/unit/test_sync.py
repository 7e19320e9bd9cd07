"""sync_with against in-memory ledgers: both directions, idempotent, events below the
other side's head are not lost (DESIGN.md §5), and a peer's malformed reply ends only
that round (hearthnet.validate), never the caller's loop. The ranged-digest exchange
and its fallback to the full id lists have their own file (test_sync_digest.py); the
fakes here serve both, like the real gateway."""
from __future__ import annotations

import asyncio
import hashlib
from typing import Any, Callable

import pytest

from hearthnet.errors import HearthNetError
from hearthnet.ledger.digest import parse_ranges, range_hash
from hearthnet.sync import pull_events, sync_with
from hearthnet.transport.client import PeerCallError


def eid(tag: str) -> str:
    """A ULID-shaped event id (Crockford base32) standing for `tag`."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    return "01J" + "".join(alphabet[ord(c) % 32] for c in tag.ljust(23, "0"))[:23]


G1, G2, A5, B5, B9 = (eid(t) for t in ("g1", "g2", "a5", "b5", "b9"))


class MemLedger:
    def __init__(self, events: dict[str, int]) -> None:
        self.store = dict(events)  # event_id -> lamport

    async def heads(self):
        return {"head": max(self.store.values(), default=0), "count": len(self.store),
                "digest": "blake3:" + hashlib.blake2s("|".join(sorted(self.store)).encode()).hexdigest()}

    async def ids(self):
        return set(self.store)

    def _between(self, lo, hi):
        return [i for i, lam in sorted(self.store.items(), key=lambda kv: (kv[1], kv[0])) if lo <= lam <= hi]

    async def digests(self, ranges):
        return [(len(ids), range_hash(ids)) for ids in (self._between(lo, hi) for lo, hi in ranges)]

    async def ids_in(self, ranges):
        return [i for lo, hi in ranges for i in self._between(lo, hi)]

    async def events_of(self, ids):
        return [{"event_id": i, "lamport": self.store[i]} for i in ids]

    async def ingest(self, events):
        new = [e for e in events if e["event_id"] not in self.store]
        for e in new:
            self.store[e["event_id"]] = e["lamport"]
        return {"accepted": len(new), "rejected": 0}


class LocalSide(MemLedger):
    async def events(self, ids):  # the Ledger interface sync_with uses
        return await self.events_of(ids)


class FakePeerClient:
    """The peer's gateway routes, served from its MemLedger; `tamper[path]` rewrites a
    reply the way a broken or hostile peer would."""

    def __init__(self, peer: MemLedger, fail: bool = False,
                 tamper: dict[str, Callable[[Any], Any]] | None = None, digest: bool = True) -> None:
        self.peer, self.fail, self.posts = peer, fail, []
        self.tamper = tamper or {}
        self.digest = digest  # False: a peer from before /sync/v1/digest (404 not_found)
        self.bodies: list[tuple[str, Any]] = []

    async def get_signed(self, node, ep, path, cap):
        if self.fail:
            raise HearthNetError("partition", "peer unreachable")
        return self.tamper.get(path, lambda r: r)(await self.peer.heads())

    async def post_signed(self, node, ep, path, cap, body):
        self.posts.append(path)
        self.bodies.append((path, body))
        if path == "/sync/v1/digest" and not self.digest:
            raise PeerCallError("not_found", "Not Found", http_status=404)
        if path == "/sync/v1/digest":
            ranges = parse_ranges(body["ranges"])  # the route's own check: the caller asks well
            reply: Any = {"ranges": [{"lamport_lo": lo, "lamport_hi": hi, "count": c, "hash": h}
                                     for (lo, hi), (c, h) in zip(ranges, await self.peer.digests(ranges))]}
        elif path == "/sync/v1/ids" and body.get("ranges") is not None:
            reply = {"ids": await self.peer.ids_in(parse_ranges(body["ranges"]))}
        elif path == "/sync/v1/ids":
            reply = {"ids": sorted(await self.peer.ids())}
        elif path == "/sync/v1/events":
            reply = await self.peer.ingest(body["events"])
        elif path == "/sync/v1/pull":
            reply = {"events": await self.peer.events_of(body["ids"])}
        else:
            raise AssertionError(path)
        return self.tamper.get(path, lambda r: r)(reply)


PEER = {"node_id": "ed25519:peer", "endpoint": {"host": "127.0.0.1", "port": 7080}}


@pytest.mark.parametrize("digest", [True, False], ids=["ranged", "old peer"])
def test_round_goes_both_ways_and_keeps_concurrent_events_below_the_head(digest):
    ours = LocalSide({G1: 1, G2: 2, A5: 5})            # we wrote A5 while partitioned
    theirs = MemLedger({G1: 1, G2: 2, B5: 5, B9: 9})  # their head (9) is above A5
    client = FakePeerClient(theirs, digest=digest)
    result = asyncio.run(sync_with(ours, client, "cid", PEER))
    assert result.ok and result.sent == 1 and result.received == 2
    assert set(ours.store) == set(theirs.store) == {G1, G2, A5, B5, B9}
    again = asyncio.run(sync_with(ours, client, "cid", PEER))  # idempotent: nothing moves
    assert again.ok and again.sent == 0 and again.received == 0
    assert client.posts.count("/sync/v1/events") == 1


def test_unreachable_peer_is_reported_not_raised():
    result = asyncio.run(sync_with(LocalSide({G1: 1}), FakePeerClient(MemLedger({}), fail=True),
                                   "cid", PEER))
    assert not result.ok and result.error.startswith("partition")


BAD_REPLIES = {
    "heads not an object": ("/sync/v1/heads", lambda r: ["not", "a", "map"]),
    "heads head a string": ("/sync/v1/heads", lambda r: {**r, "head": "9"}),
    "ids missing": ("/sync/v1/ids", lambda r: {}),
    "ids a string": ("/sync/v1/ids", lambda r: {"ids": "everything"}),
    "ids holds a map": ("/sync/v1/ids", lambda r: {"ids": [{"x": 1}]}),
    "ids holds a non-ULID": ("/sync/v1/ids", lambda r: {"ids": r["ids"] + ["../../etc"]}),
    "digest not an object": ("/sync/v1/digest", lambda r: "same"),
    "digest ranges missing": ("/sync/v1/digest", lambda r: {}),
    "digest one range short": ("/sync/v1/digest", lambda r: {"ranges": r["ranges"][1:]}),
    "digest one range too many": ("/sync/v1/digest", lambda r: {"ranges": r["ranges"] * 2}),
    "digest answers other bounds": ("/sync/v1/digest", lambda r: {"ranges": [
        {**x, "lamport_hi": x["lamport_hi"] + 1} for x in r["ranges"]]}),
    "digest count negative": ("/sync/v1/digest", lambda r: {"ranges": [
        {**x, "count": -1} for x in r["ranges"]]}),
    "digest hash not hex": ("/sync/v1/digest", lambda r: {"ranges": [
        {**x, "hash": "z" * 32} for x in r["ranges"]]}),
    "digest hash huge": ("/sync/v1/digest", lambda r: {"ranges": [
        {**x, "hash": "a" * 10**6} for x in r["ranges"]]}),
    "events reply a list": ("/sync/v1/events", lambda r: [r]),
    "events accepted a string": ("/sync/v1/events", lambda r: {**r, "accepted": "lots"}),
    "events accepted more than sent": ("/sync/v1/events", lambda r: {**r, "accepted": 10**9}),
    "pull without events": ("/sync/v1/pull", lambda r: {}),
    "pull events a map": ("/sync/v1/pull", lambda r: {"events": {"a": 1}}),
    "pull holds a string": ("/sync/v1/pull", lambda r: {"events": ["event"]}),
    "pull holds an event not asked for": ("/sync/v1/pull", lambda r: {"events": r["events"] + [
        {"event_id": eid("zz"), "lamport": 1}]}),
    "pull repeats an event": ("/sync/v1/pull", lambda r: {"events": r["events"] * 3}),
}


@pytest.mark.parametrize("case", sorted(BAD_REPLIES))
def test_malformed_reply_fails_the_round_only(case, caplog):
    path, tamper = BAD_REPLIES[case]
    ours = LocalSide({G1: 1, A5: 5})
    client = FakePeerClient(MemLedger({G1: 1, B5: 5}), tamper={path: tamper})
    result = asyncio.run(sync_with(ours, client, "cid", PEER))
    assert not result.ok and result.error.startswith("bad_response: "), result
    # The next peer (or the next round with a mended peer) still syncs.
    good = asyncio.run(sync_with(ours, FakePeerClient(MemLedger({G1: 1, B5: 5})), "cid", PEER))
    assert good.ok and B5 in ours.store


def test_a_failing_peer_is_logged_once_per_problem(caplog):
    ours = LocalSide({G1: 1})
    client = FakePeerClient(MemLedger({B5: 5}), tamper={"/sync/v1/ids": lambda r: {"ids": 7}})
    peer = {**PEER, "node_id": "ed25519:once"}
    for _ in range(5):
        assert not asyncio.run(sync_with(ours, client, "cid", peer)).ok
    lines = [r for r in caplog.records if "ed25519:once" in r.getMessage()]
    assert len(lines) == 1


@pytest.mark.parametrize("peer", [None, [], {"node_id": 5}, {"node_id": "ed25519:x"},
                                  {"node_id": "ed25519:x", "endpoint": "host:1"}])
def test_a_malformed_peer_record_is_a_failed_round(peer):
    result = asyncio.run(sync_with(LocalSide({}), FakePeerClient(MemLedger({})), "cid", peer))
    assert not result.ok and result.error.startswith("bad_response")


def test_pull_events_keeps_the_given_order_in_batches_and_reports_progress():
    theirs = MemLedger({eid(f"e{i}"): i for i in range(1, 8)})
    order = [eid(f"e{i}") for i in (3, 1, 2, 7, 5, 4, 6)]
    stored: list[str] = []
    progress: list[tuple[int, int]] = []

    async def store(events):
        stored.extend(e["event_id"] for e in events)
        return len(events), 0

    counts = asyncio.run(pull_events(FakePeerClient(theirs), "cid", "n", {}, order, store, batch=3,
                                     progress=lambda done, total: progress.append((done, total))))
    assert stored == order and counts.accepted == 7
    assert progress == [(3, 7), (6, 7), (7, 7)]


def test_pull_events_stops_at_a_bad_batch_keeping_what_was_stored():
    theirs = MemLedger({eid(f"e{i}"): i for i in range(1, 7)})
    order = [eid(f"e{i}") for i in range(1, 7)]
    calls = {"n": 0}

    def second_is_bad(reply):
        calls["n"] += 1
        return {"events": "garbage"} if calls["n"] == 2 else reply

    stored: list[str] = []

    async def store(events):
        stored.extend(e["event_id"] for e in events)
        return len(events), 0

    client = FakePeerClient(theirs, tamper={"/sync/v1/pull": second_is_bad})
    with pytest.raises(HearthNetError) as err:
        asyncio.run(pull_events(client, "cid", "n", {}, order, store, batch=2))
    assert err.value.code == "bad_response" and stored == order[:2]
