"""The marketplace service (spec svc-market-chat-file §1; issue 9): the `market` worker.

    market.list    member  {category?, tags?, since_lamport?, status?=active|fulfilled|expired|all,
                           limit?=50 (<=500)} -> {posts: [...], max_lamport}, meta {ms, count}
    market.search  member  {query, k?=10 (<=100)} -> {posts: [... + score], max_lamport},
                           meta {ms, search_mode: semantic|substring, search_reason, model?, ...}
    market.post    self    {client_id, category, title, body, location?, tags?, ttl_seconds?, quantity?}
                           -> {event_id, lamport}, meta {deduplicated}
    market.expire  self    {client_id, event_id (or a unique prefix of 6+ characters), reason}
                           -> {event_id, lamport} of the expiry, meta {deduplicated, already_expired}

Event-sourced: the view (view.py) follows the ledger (follow.py) and is rebuilt from the
log at every (re)subscription and after a revocation (which may purge a member's
events). `market.post`/`market.expire` are served only for this node's owner: the event
is authored and signed by this node through `community.log.append`, and the ledger is
the authority on who may expire or update what (domain.py); the checks here only give
a plainer error earlier. A retried call with the same client_id gets the same event back.

The stale sweeper (every `sweep_seconds`) runs only while this node is a trusted or
anchor member: it expires, with reason `stale`, posts past expires_at that have no
expiry yet. Several sweepers at once are harmless (one winner per post, view.py).
"""
from __future__ import annotations

import asyncio
import collections
import importlib.util
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from hearthnet.bus.service import Capability, Request
from hearthnet.errors import HearthNetError
from hearthnet.ledger.events import MARKET_EXPIRE_REASONS, ULID_RE
from hearthnet.services.follow import REVOKED, FollowedView, LogFollower
from hearthnet.services.market.post import (CATEGORIES, MAX_CLIENT_ID, STATUS_FILTERS, post_problem, tags_problem,
                                            ttl_problem)
from hearthnet.services.market.search import EMBED_BATCH, Matrix, VectorCache, semantic_rank, substring_rank
from hearthnet.services.market.view import CREATED, EVENT_TYPES, EXPIRED, MarketView

log = logging.getLogger("hearthnet.market")

DEFAULT_LIMIT, MAX_LIMIT = 50, 500
DEFAULT_K, MAX_K = 10, 100
MAX_QUERY = 500
MIN_PREFIX = 6
MODERATORS = ("trusted", "anchor")
SWEEP_BATCH = 500  # expiries one sweep appends at most
SEARCH_MARGIN_SECONDS = 1.0  # of the search deadline kept for ranking and the answer
WARM_SECONDS = 600.0  # the background filler of the search cache stops after this long
MODEL_CACHE_SECONDS = 5.0  # who serves embed.text is asked of the broker at most this often


@dataclass(frozen=True)
class MarketSettings:
    default_ttl_seconds: int = 604800
    max_ttl_seconds: int = 2592000
    embedding_model: str = ""  # preferred for search when some node serves it
    cache_entries: int = 5000
    sweep_seconds: float = 60.0

    @classmethod
    def from_config(cls, cfg: Any) -> "MarketSettings":
        from hearthnet.config import embedding_model

        m = cfg.market
        return cls(default_ttl_seconds=m.default_ttl_seconds, max_ttl_seconds=m.max_ttl_seconds,
                   embedding_model=embedding_model(cfg.embedding), cache_entries=m.search_cache_entries,
                   sweep_seconds=m.sweep_seconds)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)


class _Fallback(Exception):
    """Semantic search is not possible now; the reason goes to meta.search_reason."""


class MarketService(FollowedView):
    READY_WAIT_SECONDS = 5.0
    NOT_READY = "the marketplace has not read the event log yet"
    name = "market"

    def __init__(self, settings: MarketSettings, bus: Any, node_id: str,
                 level_of: Callable[[str], str | None], membership: Any = None) -> None:
        self.settings = settings
        self.bus = bus
        self.node_id = node_id
        self.level_of = level_of
        self.membership = membership
        self.view = MarketView()
        self.follower = LogFollower(bus, node_id, [*EVENT_TYPES, REVOKED], self._rebuild, self._on_event)
        self.cache = VectorCache(settings.cache_entries)
        self.matrix = Matrix()
        self.ready = asyncio.Event()
        self._lock = asyncio.Lock()  # one own append at a time: client_id dedup has no race
        self._own: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        self._tasks: set[asyncio.Task] = set()
        self._keyed: tuple[list[Any], str, list[Any], list[tuple[str, str, str]]] | None = None
        self._warming: asyncio.Future | None = None  # the background filler of the vector cache
        self._model_choice: tuple[float, str | None, str] | None = None  # (monotonic time, model, reason)

    @classmethod
    def from_config(cls, cfg: Any) -> "MarketService":
        from hearthnet.bus.client import BusClient
        from hearthnet.identity import keys
        from hearthnet.membership import Membership

        node_id = keys.load(cfg.identity.keys_dir).node_id_full
        bus = BusClient(cfg.paths.broker_clients_endpoint)
        membership = Membership(bus, node_id)
        return cls(MarketSettings.from_config(cfg), bus, node_id, membership.level_of, membership)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        start = getattr(self.bus, "start", None)
        if start is not None:
            await start()
        if self.membership is not None:
            self.membership.start()
        self._spawn(self.follower.run())
        self._spawn(self._sweeper())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.membership is not None:
            await self.membership.close()
        close = getattr(self.bus, "close", None)
        if close is not None:
            await close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def health(self) -> dict[str, Any]:
        if not self.ready.is_set():
            return {"note": "reading the event log"}
        return {"note": f"posts: {len(self.view.active())} active, {len(self.view)} in all"}

    # ------------------------------------------------------------------ following the ledger

    def _fresh_view(self) -> MarketView:
        return MarketView()

    def _rebuilt(self, fresh: MarketView) -> None:
        """Our own recent appends the stream has not delivered yet go into the new view."""
        for ev in self._own:
            fresh.apply(ev)
        log.info("market view rebuilt", extra={"posts": len(fresh), "max_lamport": fresh.max_lamport()})

    async def _append(self, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
        """Authored and signed by this node; the ledger's refusal (unauthorized, not_found)
        reaches the caller as is."""
        event = (await self.follower.ledger("community.log.append", {"event_type": event_type, "data": data}))["event"]
        self._own.append(event)
        self.view.apply(event)
        return event

    # ------------------------------------------------------------------ capabilities

    def capabilities(self) -> list[Capability]:
        obj, text, integer = {"type": "object"}, {"type": "string"}, {"type": "integer"}

        def schema(props: dict[str, Any]) -> dict[str, Any]:
            return {"type": "object", "properties": {"params": obj, "input": {"type": "object", "properties": props}}}

        post_props = {"event_id": text, "lamport": integer}
        return [
            Capability(name="market.list", handler=self.list, stability="beta", trust_required="member",
                       request_schema=schema({"category": text, "tags": {"type": "array"}, "since_lamport": integer,
                                              "status": {"enum": list(STATUS_FILTERS)}, "limit": integer}),
                       response_schema=obj, max_concurrent=8, timeout_seconds=5, idempotent=True),
            Capability(name="market.search", handler=self.search, stability="beta", trust_required="member",
                       request_schema=schema({"query": text, "k": integer}), response_schema=obj,
                       max_concurrent=4, timeout_seconds=10, idempotent=True),
            Capability(name="market.post", handler=self.post, stability="beta", trust_required="self",
                       request_schema=schema({"client_id": text, "category": {"enum": list(CATEGORIES)},
                                              "title": text, "body": text, "location": obj,
                                              "tags": {"type": "array"}, "ttl_seconds": integer,
                                              "quantity": integer}),
                       response_schema={"type": "object", "properties": post_props},
                       max_concurrent=4, timeout_seconds=10, idempotent=True),
            Capability(name="market.expire", handler=self.expire, stability="beta", trust_required="self",
                       request_schema=schema({"client_id": text, "event_id": text,
                                              "reason": {"enum": list(MARKET_EXPIRE_REASONS)}}),
                       response_schema={"type": "object", "properties": post_props},
                       max_concurrent=4, timeout_seconds=5, idempotent=True),
        ]

    def _owner_only(self, req: Request) -> None:
        if req.caller != self.node_id:
            raise HearthNetError("unauthorized", f"{req.capability} is served for this node's owner only")

    # ------------------------------------------------------------------ market.list

    async def list(self, req: Request) -> dict[str, Any]:
        t0 = time.perf_counter()
        query = _list_input(req.input)
        await self._wait_ready()
        now = _now()
        posts = self.view.list(now=now, **query)
        return {"output": {"posts": [p.to_wire(now) for p in posts], "max_lamport": self.view.max_lamport()},
                "meta": {"ms": _ms(t0), "count": len(posts)}}

    # ------------------------------------------------------------------ market.search

    async def search(self, req: Request) -> dict[str, Any]:
        t0 = time.perf_counter()
        query, k = _search_input(req.input)
        await self._wait_ready()
        now = _now()
        posts = self.view.active(now)
        meta: dict[str, Any] = {"considered": len(posts)}
        try:
            ranked = await self._semantic(query, posts, k, req, meta)
            meta["search_mode"] = "semantic"
        except _Fallback as why:
            ranked = substring_rank(posts, query, k)
            meta.update(search_mode="substring", search_reason=str(why))
            log.debug("market search by substring", extra={"reason": str(why)})
        out = [{**p.to_wire(now), "score": round(score, 4)} for p, score in ranked]
        meta["ms"] = _ms(t0)
        return {"output": {"posts": out, "max_lamport": self.view.max_lamport()}, "meta": meta}

    async def _semantic(self, query: str, posts: list[Any], k: int, req: Request,
                        meta: dict[str, Any]) -> list[tuple[Any, float]]:
        if importlib.util.find_spec("numpy") is None:
            raise _Fallback("numpy is not installed on this node (pip install 'hearthnet[knowledge]')")
        model, reason = await self._model()
        meta.update(model=model, search_reason=reason)
        deadline = (req.deadline or time.monotonic() + 10.0) - SEARCH_MARGIN_SECONDS
        qvec = (await self._embed(model, [query], deadline))[0]
        candidates, keys = self._keys_for(model, posts)
        if self.matrix.covers(keys):  # every candidate embedded, nothing changed since
            usable, matrix = candidates, self.matrix.matrix
            meta.update(embedded=0, not_embedded=len(posts) - len(candidates))
        else:
            done = await self._embed_missing(model, candidates, keys, deadline)
            have = [i for i, key in enumerate(keys) if self.cache.get(key) is not None]
            meta.update(embedded=done, not_embedded=len(posts) - len(have))
            if len(have) == len(candidates):
                usable, matrix = candidates, self.matrix.build(keys, self.cache)
            else:  # a partial matrix is not kept; the rest is embedded in the background
                usable, matrix = [candidates[i] for i in have], Matrix().build([keys[i] for i in have], self.cache)
                self._warm_later(model, candidates, keys)
        if usable and matrix.shape[1] != qvec.shape[0]:
            self.matrix = Matrix()
            raise _Fallback(f"{model} answered {qvec.shape[0]}-dim vectors, the cached ones have {matrix.shape[1]}")
        return semantic_rank(usable, matrix, qvec, k)

    def _keys_for(self, model: str, posts: list[Any]) -> tuple[list[Any], list[tuple[str, str, str]]]:
        """The posts semantic search ranks — the newest `search_cache_entries` active ones,
        so a board larger than the cache does not evict what the next search needs — and
        their cache keys; made once per list (the view hands out the same active list until
        it changes), so an unchanged board reuses keys and matrix."""
        keyed = self._keyed
        if keyed is not None and keyed[0] is posts and keyed[1] == model:
            return keyed[2], keyed[3]
        candidates = posts if len(posts) <= self.cache.capacity else posts[:self.cache.capacity]
        keys = [(model, p.event_id, p.content) for p in candidates]
        self._keyed = (posts, model, candidates, keys)
        return candidates, keys

    def _warm_later(self, model: str, posts: list[Any], keys: list[tuple[str, str, str]]) -> None:
        """Embed the rest of the board after the answer (one filler at a time), so the
        next searches find it in the cache."""
        if self._warming is not None and not self._warming.done():
            return

        async def fill() -> None:
            try:
                done = await self._embed_missing(model, posts, keys, time.monotonic() + WARM_SECONDS)
                log.info("market search cache filled", extra={"embedded": done, "model": model})
            except _Fallback as why:
                log.info("market search cache not filled", extra={"reason": str(why)})

        self._warming = asyncio.ensure_future(fill())
        self._tasks.add(self._warming)
        self._warming.add_done_callback(self._tasks.discard)

    async def _embed_missing(self, model: str, posts: list[Any], keys: list[tuple[str, str, str]],
                             deadline: float) -> int:
        """Embed the posts the cache lacks, batch by batch, until the deadline; how many."""
        missing = [i for i, key in enumerate(keys) if self.cache.get(key) is None]
        done = 0
        for start in range(0, len(missing), EMBED_BATCH):
            if time.monotonic() >= deadline:
                break
            batch = missing[start:start + EMBED_BATCH]
            try:
                vectors = await self._embed(model, [posts[i].text for i in batch], deadline)
            except _Fallback:
                if done == 0 and len(missing) == len(posts):
                    raise
                break  # rank what we have
            for i, vec in zip(batch, vectors):
                self.cache.put(keys[i], vec)
            done += len(batch)
        return done

    async def _model(self) -> tuple[str, str]:
        """The model to search with and why: this node's configured one when some node
        serves it, else one a node serves (local ones first). Kept MODEL_CACHE_SECONDS."""
        choice = self._model_choice
        if choice is None or time.monotonic() - choice[0] >= MODEL_CACHE_SECONDS:
            try:
                model, reason = await self._ask_model()
            except _Fallback as why:
                model, reason = None, str(why)
            choice = self._model_choice = (time.monotonic(), model, reason)
        if choice[1] is None:
            raise _Fallback(choice[2])
        return choice[1], choice[2]

    async def _ask_model(self) -> tuple[str, str]:
        try:
            caps = (await self.bus.admin("caps")).get("capabilities") or []
        except HearthNetError as exc:
            raise _Fallback(f"the broker did not list capabilities ({exc.code})") from None
        served: dict[str, list[bool]] = {}
        for c in caps:
            model = (c.get("params") or {}).get("model") if isinstance(c, dict) else None
            if c.get("name") == "embed.text" and isinstance(model, str) and model and c.get("providers", 1):
                served.setdefault(model, []).append(bool(c.get("local")))
        if not served:
            raise _Fallback("no node in the mesh serves embed.text")
        if self.settings.embedding_model in served:
            model = self.settings.embedding_model
        else:
            model = sorted(served, key=lambda m: (not any(served[m]), m))[0]
        where = "this node" if any(served[model]) else "a peer"
        return model, f"embed.text ({model}) served by {where}"

    async def _embed(self, model: str, texts: list[str], deadline: float) -> Any:
        from hearthnet.services.rag import embedder

        left = deadline - time.monotonic()
        if left <= 0:
            raise _Fallback("no time left to embed the query")
        try:
            async with asyncio.timeout(left):
                return await embedder.embed(self.bus, model, texts, caller=self.node_id)
        except TimeoutError:
            self._model_choice = None  # ask the broker again next time
            raise _Fallback(f"embed.text ({model}) did not answer in time") from None
        except HearthNetError as exc:
            self._model_choice = None
            raise _Fallback(f"embed.text ({model}) failed: {exc.code}") from None

    # ------------------------------------------------------------------ market.post

    async def post(self, req: Request) -> dict[str, Any]:
        self._owner_only(req)
        data = _post_input(req.input, self.settings)
        await self._wait_ready()
        async with self._lock:
            found = self.view.by_client(self.node_id, CREATED, data["client_id"])
            if found is not None:
                return _written(*found, deduplicated=True)
            ev = await self._append(CREATED, data)
        return _written(ev["event_id"], ev["lamport"], deduplicated=False)

    # ------------------------------------------------------------------ market.expire

    async def expire(self, req: Request) -> dict[str, Any]:
        self._owner_only(req)
        client_id, ref, reason = _expire_input(req.input)
        await self._wait_ready()
        async with self._lock:
            found = self.view.by_client(self.node_id, EXPIRED, client_id)
            if found is not None:
                return _written(*found, deduplicated=True)
            post = self._resolve(ref)
            if post.expiry_reason is not None and post.expiry_reason != "stale":
                expiry = self.view.expiry_of(post.event_id)
                return _written(*expiry, deduplicated=False, already_expired=post.expiry_reason,
                                post_event_id=post.event_id)
            self._may_expire(post, reason)
            ev = await self._append(EXPIRED, {"client_id": client_id, "target_event_id": post.event_id,
                                              "reason": reason})
        return _written(ev["event_id"], ev["lamport"], deduplicated=False, post_event_id=post.event_id)

    def _resolve(self, ref: str) -> Any:
        found = self.view.resolve(ref)
        if not found:
            raise HearthNetError("not_found", f"no market post {ref!r} on this node")
        if len(found) > 1:
            raise HearthNetError("bad_request", f"{ref!r} matches {len(found)} posts: "
                                                f"{', '.join(found[:5])}{' …' if len(found) > 5 else ''}")
        return self.view.get(found[0])

    def _may_expire(self, post: Any, reason: str) -> None:
        """The ledger's rule, said early and plainly (the ledger still judges the event)."""
        if post.author == self.node_id:
            return
        if reason == "user_request":
            raise HearthNetError("unauthorized", "only a post's author may expire it with reason user_request")
        level = self.level_of(self.node_id)
        if level is not None and level not in MODERATORS:
            raise HearthNetError("unauthorized", f"only the post's author or a trusted member may expire it "
                                                 f"(this node is a {level})")

    # ------------------------------------------------------------------ the stale sweeper

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_seconds)
            try:
                await self.sweep()
            except Exception:  # noqa: BLE001 - best effort: the next round tries again
                log.exception("market sweep failed")

    async def sweep(self, now: datetime | None = None) -> int:
        """Expire past-due posts as `stale`, on trusted/anchor nodes only; how many."""
        if not self.ready.is_set() or self.level_of(self.node_id) not in MODERATORS:
            return 0
        swept = 0
        for post in self.view.past_due(now)[:SWEEP_BATCH]:
            client_id = f"stale-{post.event_id}"
            async with self._lock:
                if self.view.by_client(self.node_id, EXPIRED, client_id) is not None:
                    continue
                try:
                    await self._append(EXPIRED, {"client_id": client_id, "target_event_id": post.event_id,
                                                 "reason": "stale"})
                except HearthNetError as exc:
                    log.warning("could not expire a stale post", extra={"post": post.event_id, "code": exc.code,
                                                                        "reason": exc.message})
                    continue
            swept += 1
        if swept:
            log.info("stale posts expired", extra={"count": swept})
        return swept


# --------------------------------------------------------------------------- input


def _written(event_id: str, lamport: int, **meta: Any) -> dict[str, Any]:
    return {"output": {"event_id": event_id, "lamport": lamport},
            "meta": {k: v for k, v in meta.items() if v is not None}}


def _bad(message: str) -> HearthNetError:
    return HearthNetError("bad_request", message)


def _int(inp: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = inp.get(key, default)
    if type(value) is not int or not lo <= value <= hi:
        raise _bad(f"input.{key} must be a whole number {lo}-{hi}")
    return value


def _client_id(inp: dict[str, Any]) -> str:
    cid = inp.get("client_id")
    if not isinstance(cid, str) or not 1 <= len(cid) <= MAX_CLIENT_ID or not cid.strip():
        raise _bad(f"input.client_id must be a string of 1-{MAX_CLIENT_ID} characters (a ULID or UUID)")
    return cid


def _list_input(inp: dict[str, Any]) -> dict[str, Any]:
    category = inp.get("category")
    if category is not None and category not in CATEGORIES:
        raise _bad(f"input.category must be one of {', '.join(CATEGORIES)}")
    tags = inp.get("tags")
    if tags is not None and tags_problem(tags):
        raise _bad(f"input.{tags_problem(tags)}")
    status = inp.get("status", "active")
    if status not in STATUS_FILTERS:
        raise _bad(f"input.status must be one of {', '.join(STATUS_FILTERS)}")
    return {"category": category, "tags": tags, "status": status,
            "since_lamport": _int(inp, "since_lamport", 0, 0, 2**63 - 1),
            "limit": _int(inp, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)}


def _search_input(inp: dict[str, Any]) -> tuple[str, int]:
    query = inp.get("query")
    if not isinstance(query, str) or not query.strip() or len(query) > MAX_QUERY:
        raise _bad(f"input.query must be a non-empty string of at most {MAX_QUERY} characters")
    return query.strip(), _int(inp, "k", DEFAULT_K, 1, MAX_K)


def _post_input(inp: dict[str, Any], settings: MarketSettings) -> dict[str, Any]:
    ttl = inp.get("ttl_seconds", settings.default_ttl_seconds)
    problem = ttl_problem(ttl, settings.max_ttl_seconds)
    if problem:
        raise _bad(f"input.{problem} (this node's [market] max_ttl_seconds)")
    data = {"client_id": _client_id(inp), "category": inp.get("category"), "title": inp.get("title"),
            "body": inp.get("body", ""), "location": inp.get("location"), "tags": inp.get("tags", []),
            "ttl_seconds": ttl}
    if inp.get("quantity") is not None:
        data["quantity"] = inp["quantity"]
    problem = post_problem(data)
    if problem:
        raise _bad(f"input.{problem}")
    return data


def _expire_input(inp: dict[str, Any]) -> tuple[str, str, str]:
    client_id = _client_id(inp)
    ref = inp.get("event_id")
    if not isinstance(ref, str) or not MIN_PREFIX <= len(ref) <= 26 or not ULID_RE.match(ref.upper().ljust(26, "0")):
        raise _bad(f"input.event_id must be a post's event id or a unique prefix of {MIN_PREFIX}+ characters")
    reason = inp.get("reason")
    if reason not in MARKET_EXPIRE_REASONS:
        raise _bad(f"input.reason must be one of {', '.join(MARKET_EXPIRE_REASONS)}")
    return client_id, ref.upper(), reason
