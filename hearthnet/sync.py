"""Gossip sync of the community event log (X02 §7, DESIGN.md §5), run by the gateway.

One round with a peer goes both ways and is idempotent: compare heads; if they differ,
compare the sets of event ids (so events that arrived concurrently *below* the other
side's head are not lost), push the events the peer lacks (`POST /sync/v1/events`) and
pull the ones we lack (`POST /sync/v1/pull`), both verified by the receiving ledger.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from hearthnet.errors import HearthNetError
from hearthnet.transport.signing import SYNC_EVENTS, SYNC_HEADS, SYNC_IDS, SYNC_PULL

log = logging.getLogger("hearthnet.sync")

BATCH = 2000  # events per POST: ~1 MB of JSON, well under the 16 MiB body limit
SYNC_INTERVAL_SECONDS = 300


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
    """One round with one peer (`peer`: node_id, endpoint)."""
    t0 = time.monotonic()
    node, ep = peer["node_id"], peer["endpoint"]
    result = SyncResult(peer=node, ok=False)
    try:
        theirs = await client.get_signed(node, ep, "/sync/v1/heads", SYNC_HEADS)
        ours = await ledger.heads()
        if _same(theirs, ours):
            result.ok = True
            return result
        their_ids = set((await client.post_signed(node, ep, "/sync/v1/ids", SYNC_IDS,
                                                  {"community_id": community_id}))["ids"])
        our_ids = await ledger.ids()
        for batch in _batches(sorted(our_ids - their_ids)):
            reply = await client.post_signed(node, ep, "/sync/v1/events", SYNC_EVENTS,
                                             {"community_id": community_id,
                                              "events": await ledger.events(batch)})
            result.sent += int(reply.get("accepted", 0))
            result.rejected += int(reply.get("rejected", 0))
        await _pull(ledger, client, community_id, node, ep, sorted(their_ids - our_ids), result)
        result.ok = True
    except HearthNetError as exc:
        result.error = f"{exc.code}: {exc.message}"
        log.warning("sync failed", extra={"peer": node, "reason": result.error})
    finally:
        result.ms = round((time.monotonic() - t0) * 1000, 1)
    return result


async def _pull(ledger: Ledger, client: Any, community_id: str, node: str, ep: Any,
                missing: list[str], result: SyncResult) -> None:
    """Fetch the events we lack in batches, fetching the next batch while the ledger
    applies the current one."""
    def fetch(batch: list[str]) -> "asyncio.Task[dict[str, Any]]":
        return asyncio.ensure_future(client.post_signed(node, ep, "/sync/v1/pull", SYNC_PULL,
                                                        {"community_id": community_id, "ids": batch}))

    batches = _batches(missing)
    pending = fetch(batches[0]) if batches else None
    for i in range(len(batches)):
        assert pending is not None
        pulled = await pending
        pending = fetch(batches[i + 1]) if i + 1 < len(batches) else None
        try:
            applied = await ledger.ingest(pulled.get("events", []))
        except BaseException:
            if pending is not None:
                pending.cancel()
            raise
        result.received += int(applied.get("accepted", 0))
        result.rejected += int(applied.get("rejected", 0))


def _same(theirs: dict[str, Any], ours: dict[str, Any]) -> bool:
    """Equal heads and counts can still hide different events; only the id digest
    (a hash over every event id) proves two logs equal."""
    return bool(ours.get("digest")) and all(theirs.get(k) == ours.get(k)
                                            for k in ("head", "count", "digest"))


def _batches(ids: list[str]) -> list[list[str]]:
    return [ids[i:i + BATCH] for i in range(0, len(ids), BATCH)]
