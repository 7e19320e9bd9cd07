"""The ledger service: the community event log on the bus (spec core-events-discovery
§1–7; DESIGN.md §2). Runs in the `ledger` worker, the only process that writes
`<state_dir>/events.sqlite`.

Capabilities (all @1.0, stability beta, trust_required self; bodies {"params", "input"}):

    community.log.append     {event_type, data}              -> {event}
    community.log.ingest     {events: [...]}                 -> {accepted, rejected, rejected_reasons,
                                                                 new_head_lamport, duplicates}
    community.log.heads      {}                              -> {community_id, head, heads_by_type, count, digest}
    community.log.ids        {since_lamport}                 -> {ids}
                             {ranges: [{lamport_lo, lamport_hi}]} -> {ids} in those ranges (ledger/digest.py)
    community.log.digest     {ranges: [{lamport_lo, lamport_hi}]} -> {ranges: [{lamport_lo, lamport_hi,
                             count, hash}]}: ranged digests for a sync round (ledger/digest.py)
    community.log.events     {since_lamport?, ids?, event_types?, author?, limit?} -> {events}
                             {after_seq, event_types?, limit?} -> {events, seqs}: in storage
                             order on this node (seq, see store.py), for resuming live feeds
    community.log.frontier   {target_node_id}                -> {frontier}  the `frontier` a revocation
                             of that node built now must carry (views.py R1)
    community.log.subscribe  {event_types?}  stream: ("subscribed", {community_id, head, seq}) once the
                             subscription is live, then ("event", envelope) for every event stored
                             after it (local or received), until the caller leaves
                             {event_types?, with_seq: true, after_seq?}: frames ("event", {seq, event});
                             with after_seq first every stored event with a larger seq, then the
                             live ones, each once (without it: from `subscribed.seq` on)
    community.manifest.get   {}                              -> {manifest}
    community.members.get    {}                              -> {members, revoked, head_lamport}

SQLite work runs on one dedicated thread (a 1-worker executor), so the event loop keeps
heartbeating during a long ingest and the connection is only ever used from that thread.
The membership view lives in the EventLog and is only touched on that thread too.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, AsyncIterator, Callable, TypeVar

from hearthnet.config import Config
from hearthnet.errors import HearthNetError
from hearthnet.identity import keys
from hearthnet.identity.keys import KeyPair
from hearthnet.identity.manifest import read_community_manifest, write_community_manifest
from hearthnet.ledger.digest import parse_ranges
from hearthnet.ledger.errors import LedgerError
from hearthnet.ledger.events import EVENT_TYPES, MANIFEST_TYPES
from hearthnet.ledger.snapshots import SnapshotStore, take_snapshot
from hearthnet.ledger.store import EventLog
from hearthnet.bus.service import Capability, Request

log = logging.getLogger("hearthnet.ledger")
T = TypeVar("T")

SUBSCRIBER_BACKLOG = 10_000  # events queued for one slow subscriber before it is dropped
CATCH_UP_PAGE = 500  # stored events read per page when a subscription resumes after a seq
SNAPSHOT_EVERY_SECONDS = 24 * 3600
SNAPSHOT_CHECK_SECONDS = 3600
EVENTS_FILE = "events.sqlite"

_OBJ = {"type": "object"}
_INT = {"type": "integer", "minimum": 0}
_STRS = {"type": "array", "items": {"type": "string"}}
_RANGES = {"type": "array", "items": _OBJ}


def _schema(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {"params": _OBJ, "input": {"type": "object", "properties": props}}}


class Fanout:
    """Delivers each stored event to every live subscription. A subscriber that falls
    SUBSCRIBER_BACKLOG events behind is cut off (it gets an error frame) rather than
    letting its queue grow without bound."""

    def __init__(self, backlog: int = SUBSCRIBER_BACKLOG) -> None:
        self.backlog = backlog
        self.queues: set[asyncio.Queue] = set()

    def add(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(maxsize=self.backlog + 1)  # +1: room for the cut-off mark
        self.queues.add(q)
        return q

    def remove(self, q: asyncio.Queue) -> None:
        self.queues.discard(q)

    def publish(self, seq: int, ev: dict[str, Any]) -> None:
        for q in list(self.queues):
            if q.qsize() >= self.backlog:
                self.queues.discard(q)
                q.put_nowait(None)  # cut-off mark
            else:
                q.put_nowait((seq, ev))


class LedgerService:
    name = "ledger"

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.kp: KeyPair | None = None
        self.log: EventLog | None = None
        self.snapshots: SnapshotStore | None = None
        self.fanout = Fanout()
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-db")
        self._tasks: list[asyncio.Task] = []
        self._purges = 0  # purges so far: part of the heads cache's key with the seq
        self._heads_cache: tuple[tuple[int, int], tuple[dict[str, int], int, str, int]] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        cid, state_dir = self.cfg.community.community_id, self.cfg.community.state_dir
        if cid is None or state_dir is None:
            raise LedgerError("not_initialised", "this node has no community yet; run `hearthnet init`")
        self.kp = keys.load(self.cfg.identity.keys_dir)
        try:
            self.log = await self._db(EventLog, state_dir / EVENTS_FILE, cid)  # checks integrity first
            await self._db(self._adopt_manifest_and_genesis)
        except BaseException:
            self._db_thread.shutdown(wait=False)  # the worker exits: do not keep it alive
            raise
        self.snapshots = SnapshotStore(state_dir, cid)
        self._tasks.append(asyncio.create_task(self._snapshot_loop()))
        log.info("event log open", extra={"path": str(self.log.path), "head": self.log.head(),
                                          "clock": self.log.clock})

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.log is not None:
            await self._db(self.log.close)
        self._db_thread.shutdown(wait=True)

    def health(self) -> dict[str, Any]:
        return {"head_lamport": self.log.head() if self.log else None}

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, partial(fn, *args))

    def _adopt_manifest_and_genesis(self) -> None:
        """Offer the manifest on disk to the view (a non-anchor serves it). A founder whose
        log is empty while its manifest is still the genesis one (a node created before the
        ledger existed, or an init that stopped between the two files) writes the genesis
        events. Once membership has changed (head_lamport > 0) other nodes hold this
        community's events, and a second genesis would conflict with theirs: then the
        empty log waits for sync instead."""
        assert self.log is not None and self.kp is not None
        path = self.cfg.community_manifest_path
        manifest = None
        if path is not None and path.exists():
            manifest = read_community_manifest(path)
            self.log.view.offer_manifest(manifest)
        founder = self.kp.node_id_full == self.log.community_id
        if manifest and founder and manifest["head_lamport"] == 0 and self.log.count() == 0:
            self.log.create_genesis(self.kp, manifest["name"], manifest["policy"],
                                    display_name=self.cfg.node.display_name)
            log.info("wrote the genesis events of this community", extra={"path": str(self.log.path)})

    # ------------------------------------------------------------------ capabilities

    def capabilities(self) -> list[Capability]:
        def cap(name: str, handler: Any, request: dict[str, Any], *, timeout: int = 30,
                idempotent: bool = True, stream: dict[str, Any] | None = None) -> Capability:
            return Capability(name=name, handler=handler, stability="beta", trust_required="self",
                              request_schema=request, response_schema=_OBJ, stream_schema=stream,
                              max_concurrent=32, timeout_seconds=timeout, idempotent=idempotent)

        return [
            cap("community.log.append", self.append,
                _schema(event_type={"type": "string", "enum": sorted(EVENT_TYPES)}, data=_OBJ),
                timeout=10, idempotent=False),
            cap("community.log.ingest", self.ingest, _schema(events={"type": "array", "items": _OBJ}),
                timeout=120),
            cap("community.log.heads", self.heads, _schema()),
            cap("community.log.ids", self.ids, _schema(since_lamport=_INT, ranges=_RANGES)),
            cap("community.log.digest", self.digest, _schema(ranges=_RANGES)),
            cap("community.log.frontier", self.frontier,
                _schema(target_node_id={"type": "string"}, action={"type": "string", "enum": ["revoke", "demote"]})),
            cap("community.log.events", self.events,
                _schema(since_lamport=_INT, after_seq=_INT, ids=_STRS, event_types=_STRS, author={"type": "string"},
                        limit={"type": "integer", "minimum": 1}), timeout=60),
            # A subscription lasts until the caller leaves; the deadline only bounds a forgotten one.
            cap("community.log.subscribe", self.subscribe,
                _schema(event_types=_STRS, after_seq=_INT, with_seq={"type": "boolean"}),
                timeout=24 * 3600, idempotent=False, stream=_OBJ),
            cap("community.manifest.get", self.manifest_get, _schema(), timeout=10),
            cap("community.members.get", self.members_get, _schema(), timeout=10),
        ]

    async def append(self, req: Request) -> dict[str, Any]:
        event_type, data = req.input.get("event_type"), req.input.get("data")
        if not isinstance(event_type, str) or not isinstance(data, dict):
            raise HearthNetError("bad_request", "input needs event_type (string) and data (object)")
        if event_type not in EVENT_TYPES:
            raise HearthNetError("bad_request", f"unknown event type {event_type!r}")
        t0 = time.perf_counter()
        ev, seq = await self._db(self._append_local, event_type, data)
        await self._after_stored([ev], [seq])
        return {"output": {"event": ev}, "meta": {"lamport": ev["lamport"], "ms": _ms(t0)}}

    def _append_local(self, event_type: str, data: dict[str, Any]) -> tuple[dict[str, Any], int]:
        ev = self.log.append_local(self.kp, event_type, data)
        return ev, self.log.seq  # one insert: the high-water mark is its seq (db thread only)

    async def ingest(self, req: Request) -> dict[str, Any]:
        events = req.input.get("events")
        if not isinstance(events, list):
            raise HearthNetError("bad_request", "input.events must be a list of events")
        t0 = time.perf_counter()
        result = await self._db(self.log.append_received, events)
        await self._after_stored(result.stored, result.seqs, purged=bool(result.purged))
        if result.rejected:
            log.warning("rejected received events", extra={"rejected": result.rejected,
                                                           "reasons": result.rejected_reasons[:5]})
        return {"output": result.to_wire(), "meta": {"ms": _ms(t0), "purged": len(result.purged)}}

    async def frontier(self, req: Request) -> dict[str, Any]:
        target = req.input.get("target_node_id")
        try:
            keys.parse_node_id(target)
        except (HearthNetError, TypeError):
            raise HearthNetError("bad_request", "input.target_node_id must be a full node id") from None
        action = req.input.get("action", "revoke")
        if action not in ("revoke", "demote"):
            raise HearthNetError("bad_request", "input.action must be revoke or demote")
        ids = await self._db(self.log.frontier, target, action)
        return {"output": {"frontier": ids}, "meta": {"count": len(ids)}}

    async def heads(self, req: Request) -> dict[str, Any]:
        by_type, count, digest, head = await self._db(self._heads)
        return {"output": {"community_id": self.log.community_id, "head": head,
                           "heads_by_type": by_type, "count": count, "digest": digest}, "meta": {}}

    def _heads(self) -> tuple[dict[str, int], int, str, int]:
        """Every sync round of every peer asks for the heads, and the digest reads the
        whole log: kept until the log changes (a new seq, or a purge), db thread only."""
        key = (self.log.seq, self._purges)
        if self._heads_cache is None or self._heads_cache[0] != key:
            self._heads_cache = (key, (self.log.heads_by_type(), self.log.count(), self.log.digest(),
                                       self.log.head()))
        return self._heads_cache[1]

    async def ids(self, req: Request) -> dict[str, Any]:
        if req.input.get("ranges") is not None:
            ranges = parse_ranges(req.input["ranges"], "input.ranges")
            return {"output": {"ids": await self._db(self.log.ids_in_ranges, ranges)}, "meta": {}}
        since = _int_input(req, "since_lamport", 0)
        return {"output": {"ids": await self._db(self.log.ids_since, since)}, "meta": {}}

    async def digest(self, req: Request) -> dict[str, Any]:
        ranges = parse_ranges(req.input.get("ranges"), "input.ranges")
        return {"output": {"ranges": await self._db(self.log.range_digests, ranges)}, "meta": {}}

    async def events(self, req: Request) -> dict[str, Any]:
        inp = req.input
        limit = _int_input(req, "limit", None)
        if limit is not None and limit < 1:
            raise HearthNetError("bad_request", "input.limit must be at least 1")
        author = inp.get("author")
        if author is not None and not isinstance(author, str):
            raise HearthNetError("bad_request", "input.author must be a full node id")
        after = _int_input(req, "after_seq", None)
        if after is not None:  # storage order, for live feeds that resume
            rows = await self._db(self.log.events_after, after, _str_list(inp, "event_types"), limit)
            return {"output": {"events": [ev for _, ev in rows], "seqs": [seq for seq, _ in rows]},
                    "meta": {"count": len(rows)}}
        found = await self._db(self.log.events, _int_input(req, "since_lamport", 0),
                               _str_list(inp, "ids"), _str_list(inp, "event_types"), author, limit)
        return {"output": {"events": found}, "meta": {"count": len(found)}}

    async def subscribe(self, req: Request) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        if not req.stream:
            raise HearthNetError("bad_request", "community.log.subscribe is a stream: call it with "
                                                "Accept: text/event-stream (or --stream)")
        types = _str_list(req.input, "event_types")
        after = _int_input(req, "after_seq", None)
        with_seq = req.input.get("with_seq", after is not None)
        if not isinstance(with_seq, bool) or (after is not None and not with_seq):
            raise HearthNetError("bad_request", "input.with_seq must be true or false (true with after_seq)")
        if not with_seq:
            return self._subscription(set(types) if types is not None else None)
        return self._seq_subscription(set(types) if types is not None else None, after)

    async def _subscription(self, types: set[str] | None) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        queue = self.fanout.add()  # live before the first frame, so nothing after it is missed
        try:
            yield "subscribed", {"community_id": self.log.community_id, "head": self.log.head(),
                                 "seq": self.log.seq}
            while True:
                item = await queue.get()
                if item is None:
                    raise HearthNetError("capacity_exceeded", "subscriber fell too far behind; subscribe again")
                if types is None or item[1]["event_type"] in types:
                    yield "event", item[1]
        finally:
            self.fanout.remove(queue)

    async def _seq_subscription(self, types: set[str] | None,
                                after: int | None) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Frames {seq, event}: every event stored with a seq past `after` (default: the
        high-water mark when the subscription went live), each once. The queue is live
        before the catch-up reads, so an event stored meanwhile is in one or both; the
        live ones at or below the last seq read are dropped. Events reach the queue in
        seq order (the db thread stores them one transaction after another and each
        caller publishes first thing when its write returns), so seqs only grow."""
        queue = self.fanout.add()
        try:
            top = await self._db(lambda: self.log.seq)
            # A token past our high-water mark (one of another log, or of a log restored
            # from an older backup) counts from now: nothing past it was ever given out.
            after = top if after is None else min(after, top)
            yield "subscribed", {"community_id": self.log.community_id, "head": self.log.head(),
                                 "seq": after}
            last = after
            while True:  # catch-up, page by page in storage order
                page = await self._db(self.log.events_after, last, types, CATCH_UP_PAGE)
                for seq, ev in page:
                    yield "event", {"seq": seq, "event": ev}
                    last = seq
                if len(page) < CATCH_UP_PAGE:
                    break
            while True:
                item = await queue.get()
                if item is None:
                    raise HearthNetError("capacity_exceeded", "subscriber fell too far behind; "
                                                              "subscribe again with after_seq")
                seq, ev = item
                if seq > last and (types is None or ev["event_type"] in types):
                    yield "event", {"seq": seq, "event": ev}
                    last = seq
        finally:
            self.fanout.remove(queue)

    async def members_get(self, req: Request) -> dict[str, Any]:
        """Membership as the event log says it (the unsigned manifest body): what the
        gateway checks peers against, also on nodes that cannot sign a manifest."""
        body = await self._db(self.log.view.manifest_body)
        return {"output": {"members": body["members"], "revoked": body["revoked"],
                           "head_lamport": body["head_lamport"]}, "meta": {}}

    async def manifest_get(self, req: Request) -> dict[str, Any]:
        m = await self._db(self.log.view.manifest, self.kp)
        if m is None:
            raise HearthNetError("not_found", "no verified community manifest yet")
        return {"output": {"manifest": m}, "meta": {"head_lamport": m["head_lamport"]}}

    # ------------------------------------------------------------------ after a write

    async def _after_stored(self, events: list[dict[str, Any]], seqs: list[int], *,
                            purged: bool = False) -> None:
        if purged:
            self._purges += 1
        for seq, ev in zip(seqs, events):
            self.fanout.publish(seq, ev)
        if purged or any(ev["event_type"] in MANIFEST_TYPES for ev in events):
            await self._db(self._rewrite_manifest)

    def _rewrite_manifest(self) -> None:
        """manifest.json follows membership when this node may sign it (an anchor)."""
        path = self.cfg.community_manifest_path
        if path is None or self.log.view.level_of(self.kp.node_id_full) != "anchor":
            return
        m = self.log.view.manifest(self.kp)
        if m is not None:
            write_community_manifest(m, path)
            log.info("community manifest rewritten", extra={"head_lamport": m["head_lamport"],
                                                            "members": len(m["members"])})

    async def _snapshot_loop(self) -> None:
        while True:
            try:
                if self._snapshot_due():
                    snap = await self._db(take_snapshot, self.log, self.kp, self.snapshots)
                    if snap is not None:
                        log.info("snapshot written", extra={"lamport": snap["lamport"]})
            except (LedgerError, OSError) as exc:  # a missed snapshot is retried next round
                log.warning("snapshot failed", extra={"error": str(exc)})
            await asyncio.sleep(SNAPSHOT_CHECK_SECONDS)

    def _snapshot_due(self) -> bool:
        done = self.snapshots.list()
        if not done:
            return True
        age = time.time() - self.snapshots.path_for(done[-1]).stat().st_mtime
        return age >= SNAPSHOT_EVERY_SECONDS


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)


def _int_input(req: Request, key: str, default: int | None) -> int | None:
    value = req.input.get(key, default)
    if value is None or (type(value) is int and value >= 0):
        return value
    raise HearthNetError("bad_request", f"input.{key} must be a non-negative integer")


def _str_list(inp: dict[str, Any], key: str) -> list[str] | None:
    value = inp.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HearthNetError("bad_request", f"input.{key} must be a list of strings")
    return value
