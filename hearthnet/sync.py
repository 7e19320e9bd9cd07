"""Gossip sync of the community event log (X02 §7, DESIGN.md §5), run by the gateway.

One round with a peer goes both ways and is idempotent: compare heads; if they differ,
find the events each side lacks (also those that arrived concurrently *below* the other
side's head), push the events the peer lacks (`POST /sync/v1/events`) and pull the ones
we lack (`POST /sync/v1/pull`), both verified by the receiving ledger.

Finding the difference costs the difference, not the log (ranged digests, README "Sync";
hearthnet/ledger/digest.py): lamport ranges are compared by (count, hash) with
`POST /sync/v1/digest`, a differing range is cut in SPLIT and compared again, and only
small differing ranges (at most LEAF events a side, or one lamport) have their ids listed
(`POST /sync/v1/ids` with `ranges`), and so do ranges whose counts alone show that much
of them differs (one side under half the other: a burst, a node that was away), where
bisecting would cost more than listing. A range one side has no event in is settled at
once (nothing to list on that side). Two logs differing in k of N events exchange
O(k log N) digest entries. A peer that predates the digest route (it answers
`not_found`) gets the old exchange: the full id lists.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable, Callable

from hearthnet import validate
from hearthnet.errors import HearthNetError
from hearthnet.ratelog import RateLimitedLog
from hearthnet.ledger.digest import MAX_DIGEST_RANGES, Range, split, wire_ranges
from hearthnet.transport.signing import SYNC_DIGEST, SYNC_EVENTS, SYNC_HEADS, SYNC_IDS, SYNC_PULL

log = logging.getLogger("hearthnet.sync")

BATCH = 2000  # events per POST: ~1 MB of JSON, well under the 16 MiB body limit
SYNC_INTERVAL_SECONDS = 300
SPLIT = 4  # a differing range is cut in this many
LEAF = 16  # a differing range with at most this many events a side has its ids listed
# A failing peer is retried every round (on news, and every 300 s): say so once in 10 min.
_failures = RateLimitedLog(log, interval=600.0)


@dataclass
class SyncResult:
    peer: str
    ok: bool
    sent: int = 0
    received: int = 0
    rejected: int = 0
    digest_ranges: int = 0  # range digests asked of the peer this round
    ids_listed: int = 0  # event ids the peer listed this round
    full_ids: bool = False  # the peer has no digest route: the full id lists were compared
    ms: float = 0.0
    error: str | None = None
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Ledger:
    """The local ledger worker, through the broker."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus

    async def _call(self, cap: str, inp: dict[str, Any]) -> dict[str, Any]:
        out = await self.bus.call(cap, "1.0", {"params": {}, "input": inp}, timeout=60)
        return out.get("output", {})

    async def heads(self) -> dict[str, Any]:
        return await self._call("community.log.heads", {})

    async def ids(self) -> set[str]:
        return set((await self._call("community.log.ids", {"since_lamport": 0}))["ids"])

    async def digests(self, ranges: list[Range]) -> list[tuple[int, str]]:
        out = (await self._call("community.log.digest", {"ranges": wire_ranges(ranges)}))["ranges"]
        return [(int(r["count"]), str(r["hash"])) for r in out]

    async def ids_in(self, ranges: list[Range]) -> list[str]:
        return list((await self._call("community.log.ids", {"ranges": wire_ranges(ranges)}))["ids"])

    async def events(self, ids: list[str]) -> list[dict[str, Any]]:
        return (await self._call("community.log.events", {"ids": ids}))["events"]

    async def ingest(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        return await self._call("community.log.ingest", {"events": events})


async def sync_with(ledger: Ledger, client: Any, community_id: str, peer: dict[str, Any]) -> SyncResult:
    """One round with one peer (`peer`: node_id, endpoint). Never raises for what the peer
    sends or fails to send: a malformed reply (hearthnet.validate), an error or silence
    ends this round with `ok` False and `error` set, logged once per peer and problem."""
    t0 = time.monotonic()
    node = peer.get("node_id") if isinstance(peer, dict) else None
    result = SyncResult(peer=node if isinstance(node, str) else "unknown peer", ok=False)
    try:
        if not isinstance(node, str) or not isinstance(peer.get("endpoint"), dict):
            validate.fail("peer record", "has no node_id and endpoint")
        ep = peer["endpoint"]
        theirs = validate.heads_reply(await client.get_signed(node, ep, "/sync/v1/heads", SYNC_HEADS))
        ours = await ledger.heads()
        if _same(theirs, ours):
            result.ok = True
            return result
        head = max(int(theirs["head"]), int(ours.get("head") or 0))
        diff = await _ranged_diff(ledger, client, community_id, node, ep, head, result)
        if diff is None:  # the peer predates /sync/v1/digest
            diff = await _full_diff(ledger, client, community_id, node, ep, result)
        missing, extra = diff
        await _push(ledger, client, community_id, node, ep, extra, result)

        async def store(events: list[dict[str, Any]]) -> tuple[int, int]:
            applied = await ledger.ingest(events)
            return int(applied.get("accepted", 0)), int(applied.get("rejected", 0))

        pulled = await pull_events(client, community_id, node, ep, missing, store)
        result.received += pulled.accepted
        result.rejected += pulled.rejected
        result.ok = True
    except HearthNetError as exc:
        result.error = f"{exc.code}: {exc.message}"
        _failures.warning(f"{result.peer}:{exc.code}", "sync with %s failed: %s", result.peer, result.error,
                          extra={"peer": result.peer, "reason": result.error})
    finally:
        result.ms = round((time.monotonic() - t0) * 1000, 1)
    return result


Diff = tuple[list[str], list[str]]  # (ids we lack in the peer's order, ids the peer lacks)


async def _ranged_diff(ledger: Ledger, client: Any, community_id: str, node: str, ep: Any, head: int,
                       result: SyncResult) -> Diff | None:
    """The difference by bisecting lamport ranges [0, head] (module docstring); None when
    the peer does not know `/sync/v1/digest` (its first answer is not_found)."""
    todo, leaves, listed = split(0, head, SPLIT), [], []
    while todo:
        deeper: list[Range] = []
        for chunk in _batches(todo, MAX_DIGEST_RANGES):
            # Ours is read while the peer answers (one round trip a level, not two).
            asked = client.post_signed(node, ep, "/sync/v1/digest", SYNC_DIGEST,
                                       {"community_id": community_id, "ranges": wire_ranges(chunk)})
            try:
                reply, ours = await asyncio.gather(asked, ledger.digests(chunk))
            except HearthNetError as exc:
                if exc.code == "not_found" and result.digest_ranges == 0:
                    return None
                raise
            theirs = validate.digest_reply(reply, chunk)
            result.digest_ranges += len(chunk)
            for rng, their, our in zip(chunk, theirs, ours):
                if their == our:
                    continue
                if _worth_splitting(rng, their[0], our[0]):
                    deeper += split(rng[0], rng[1], SPLIT)  # ascending, as `todo` is
                    continue
                leaves.append(rng)
                if their[0]:
                    listed.append(rng)
        todo = deeper
    async def theirs() -> list[str]:
        out: list[str] = []
        for chunk in _batches(sorted(listed), MAX_DIGEST_RANGES):  # sorted: the peer's replay order
            out += validate.ids_reply(await client.post_signed(
                node, ep, "/sync/v1/ids", SYNC_IDS, {"community_id": community_id, "ranges": wire_ranges(chunk)}))
        return out

    async def ours() -> list[str]:
        out: list[str] = []
        for chunk in _batches(sorted(leaves), MAX_DIGEST_RANGES):
            out += await ledger.ids_in(chunk)
        return out

    their_ids, our_ids = await asyncio.gather(theirs(), ours())
    result.ids_listed += len(their_ids)
    return _difference(their_ids, our_ids)


def _worth_splitting(rng: Range, theirs: int, ours: int) -> bool:
    """Bisect a differing range only while that can save listing it: not when it holds
    at most LEAF events a side or a single lamport, and not when the counts alone show
    that much of it differs (one side holds under half of the other's): listing it then
    costs at most about twice the ids that must move anyway (a burst of new events, or a
    node that was away) while bisecting would cost more digests than ids."""
    big, small = max(theirs, ours), min(theirs, ours)
    return rng[0] < rng[1] and big > LEAF and 2 * small >= big


async def _full_diff(ledger: Ledger, client: Any, community_id: str, node: str, ep: Any,
                     result: SyncResult) -> Diff:
    """The old exchange: every id the peer holds against every id we hold."""
    their_ids = validate.ids_reply(await client.post_signed(node, ep, "/sync/v1/ids", SYNC_IDS,
                                                            {"community_id": community_id}))
    result.ids_listed += len(their_ids)
    result.full_ids = True
    return _difference(their_ids, sorted(await ledger.ids()))


def _difference(their_ids: list[str], our_ids: list[str]) -> Diff:
    theirs, ours = set(their_ids), set(our_ids)
    return [i for i in their_ids if i not in ours], [i for i in our_ids if i not in theirs]


async def _push(ledger: Ledger, client: Any, community_id: str, node: str, ep: Any, ids: list[str],
                result: SyncResult) -> None:
    for batch in _batches(ids):
        events = await ledger.events(batch)
        reply = await client.post_signed(node, ep, "/sync/v1/events", SYNC_EVENTS,
                                         {"community_id": community_id, "events": events})
        accepted, rejected = validate.events_reply(reply, len(events))
        result.sent += accepted
        result.rejected += rejected


@dataclass
class PullCounts:
    accepted: int = 0
    rejected: int = 0


Store = Callable[[list[dict[str, Any]]], Awaitable[tuple[int, int]]]


async def pull_events(client: Any, community_id: str, node: str, endpoint: Any, ids: list[str],
                      store: Store, *, batch: int = BATCH,
                      progress: Callable[[int, int], None] | None = None) -> PullCounts:
    """The one client of `POST /sync/v1/pull` (the mesh's sync rounds and invite redeem):
    fetch `ids` from `node` in batches, in the order given (the peer's replay order, so
    an author's join is stored before its events), fetching the next batch while `store`
    keeps the current one. `store(events)` -> (accepted, rejected); `progress(done,
    total)` after each batch. Each reply must hold only events we asked for
    (validate.pull_reply): PeerDataError otherwise; what was stored before stays (a
    later pull resumes from what is still missing)."""
    def fetch(ids_: list[str]) -> "asyncio.Task[dict[str, Any]]":
        return asyncio.ensure_future(client.post_signed(node, endpoint, "/sync/v1/pull", SYNC_PULL,
                                                        {"community_id": community_id, "ids": ids_}))

    counts, done = PullCounts(), 0
    batches = _batches(ids, batch)
    pending = fetch(batches[0]) if batches else None
    try:
        for i, current in enumerate(batches):
            assert pending is not None
            reply = await pending
            pending = fetch(batches[i + 1]) if i + 1 < len(batches) else None
            accepted, rejected = await store(validate.pull_reply(reply, current))
            counts.accepted += accepted
            counts.rejected += rejected
            done += len(current)
            if progress is not None:
                progress(done, len(ids))
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
    return counts


def _same(theirs: dict[str, Any], ours: dict[str, Any]) -> bool:
    """Equal heads and counts can still hide different events; only the id digest
    (a hash over every event id) proves two logs equal."""
    return bool(ours.get("digest")) and all(theirs.get(k) == ours.get(k)
                                            for k in ("head", "count", "digest"))


def _batches(ids: list[Any], size: int = BATCH) -> list[list[Any]]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]
