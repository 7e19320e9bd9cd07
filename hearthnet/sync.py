"""Gossip sync of the community event log (X02 §7, DESIGN.md §5), run by the gateway.

One round with a peer goes both ways and is idempotent: compare heads; if they differ,
compare the sets of event ids (so events that arrived concurrently *below* the other
side's head are not lost), push the events the peer lacks (`POST /sync/v1/events`) and
pull the ones we lack (`POST /sync/v1/pull`), both verified by the receiving ledger.
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
from hearthnet.transport.signing import SYNC_EVENTS, SYNC_HEADS, SYNC_IDS, SYNC_PULL

log = logging.getLogger("hearthnet.sync")

BATCH = 2000  # events per POST: ~1 MB of JSON, well under the 16 MiB body limit
SYNC_INTERVAL_SECONDS = 300
# A failing peer is retried every round (on news, and every 300 s): say so once in 10 min.
_failures = RateLimitedLog(log, interval=600.0)


@dataclass
class SyncResult:
    peer: str
    ok: bool
    sent: int = 0
    received: int = 0
    rejected: int = 0
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
        their_ids = validate.ids_reply(await client.post_signed(node, ep, "/sync/v1/ids", SYNC_IDS,
                                                                {"community_id": community_id}))
        our_ids = await ledger.ids()
        await _push(ledger, client, community_id, node, ep, sorted(our_ids - set(their_ids)), result)

        async def store(events: list[dict[str, Any]]) -> tuple[int, int]:
            applied = await ledger.ingest(events)
            return int(applied.get("accepted", 0)), int(applied.get("rejected", 0))

        pulled = await pull_events(client, community_id, node, ep,
                                   [i for i in their_ids if i not in our_ids], store)
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


def _batches(ids: list[str], size: int = BATCH) -> list[list[str]]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]
