"""sync_with against in-memory ledgers: both directions, idempotent, and events below the
other side's head are not lost (DESIGN.md §5)."""
from __future__ import annotations

import asyncio

from hearthnet.errors import HearthNetError
from hearthnet.sync import sync_with


class MemLedger:
    def __init__(self, events: dict[str, int]) -> None:
        self.store = dict(events)  # event_id -> lamport

    async def heads(self):
        return {"head": max(self.store.values(), default=0), "count": len(self.store),
                "digest": "|".join(sorted(self.store))}

    async def ids(self):
        return set(self.store)

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
    """The peer's gateway routes, served from its MemLedger."""

    def __init__(self, peer: MemLedger, fail: bool = False) -> None:
        self.peer, self.fail, self.posts = peer, fail, []

    async def get_signed(self, node, ep, path, cap):
        if self.fail:
            raise HearthNetError("partition", "peer unreachable")
        return await self.peer.heads()

    async def post_signed(self, node, ep, path, cap, body):
        self.posts.append(path)
        if path == "/sync/v1/ids":
            return {"ids": sorted(await self.peer.ids())}
        if path == "/sync/v1/events":
            return await self.peer.ingest(body["events"])
        if path == "/sync/v1/pull":
            return {"events": await self.peer.events_of(body["ids"])}
        raise AssertionError(path)


PEER = {"node_id": "ed25519:peer", "endpoint": {"host": "127.0.0.1", "port": 7080}}


def test_round_goes_both_ways_and_keeps_concurrent_events_below_the_head():
    ours = LocalSide({"g1": 1, "g2": 2, "a5": 5})            # we wrote a5 while partitioned
    theirs = MemLedger({"g1": 1, "g2": 2, "b5": 5, "b9": 9})  # their head (9) is above a5
    client = FakePeerClient(theirs)
    result = asyncio.run(sync_with(ours, client, "cid", PEER))
    assert result.ok and result.sent == 1 and result.received == 2
    assert set(ours.store) == set(theirs.store) == {"g1", "g2", "a5", "b5", "b9"}
    again = asyncio.run(sync_with(ours, client, "cid", PEER))  # idempotent: nothing moves
    assert again.ok and again.sent == 0 and again.received == 0
    assert client.posts.count("/sync/v1/events") == 1


def test_unreachable_peer_is_reported_not_raised():
    result = asyncio.run(sync_with(LocalSide({"g1": 1}), FakePeerClient(MemLedger({}), fail=True),
                                   "cid", PEER))
    assert not result.ok and result.error.startswith("partition")
