"""The RAG service (spec §3): the `rag` worker's capabilities. RAG never generates
answers: it finds passages; `rag.ask` (built on `retrieve`) and the UI do the talking.

    rag.query         member   params {corpus, embedding_model?}; input {query, k?=5 (<=20), mode?=hybrid|vector,
                               filter?, include_text?=true} -> {chunks: [{rank, score, text, metadata, ranks}]},
                               meta {corpus, ms, embedding_model, mode, node}
    rag.ingest        trusted  params {corpus}; input {doc_cid, title?, language?, metadata?} -> a stream of
                               `progress` {stage, current, total, ...} ending with `done` {output, meta};
                               unary: {output: {doc_cid, chunks_indexed, tokens_indexed, pages,
                               already_indexed}, meta: {corpus, ms, ingest_event_id}}
    rag.list_corpora  member   {} -> {corpora: [{name, docs, chunks, size_bytes, language_majority,
                               embedding_model, dim}]}
    rag.reindex       self     params {corpus}; input {embedding_model?=the node's} -> a stream of `progress`
                               {stage, current, total, chunks?, embed_rate?} ending with `done` {output: {corpus,
                               embedding_model, dim, docs, chunks, from_stored_chunks}, meta: {ms, previous_model,
                               note?}} (reindex.py)

ONE `rag.query` descriptor lists this node's corpora in `params.corpora` (the broker
routes a call to a node whose list holds `params.corpus`; hearthnet/broker/core.py);
`personal` is never listed and never answered to another node. When the corpora change
the worker announces its descriptors again (`announce_changes`).

`rag.auto_replicate` (config, off by default): a `rag.document.ingested` event by
another member makes this node fetch the document (`file.get` on itself) and ingest it
into the same corpus.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from hearthnet.bus.service import Capability, Request, done_data
from hearthnet.errors import HearthNetError
from hearthnet.services.rag import embedder
from hearthnet.services.rag.corpora import Corpora
from hearthnet.services.rag.index import HNSW_THRESHOLD
from hearthnet.services.rag.extract import PDF_CPU_SECONDS
from hearthnet.services.rag.ingest import (EVENT_TYPE, BlobSource, IngestPipeline, IngestRequest, Progress,
                                           StoreBlobs, check_model, reindex_hint)
from hearthnet.config import embedding_model
from hearthnet.services.rag.ask import Asker
from hearthnet.services.rag.reindex import Reindexer, check_model_name
from hearthnet.services.rag.retrieve import MODES, Hit, retrieve
from hearthnet.services.rag.store import PERSONAL, check_corpus_name, filter_clause

log = logging.getLogger("hearthnet.rag")

DEFAULT_K, MAX_K = 5, 20  # RAG_DEFAULT_K, RAG_MAX_K
QUERY_MAX_CHARS = 8192
LEDGER_TIMEOUT_SECONDS = 10.0
REPLICATE_QUEUE = 1000
REINDEX_TIMEOUT_SECONDS = 6 * 3600  # a large corpus on a small machine: MiniLM embeds ~100 chunks/s
# A member's event decides what this node fetches: one document may hold the replicator
# (one queue) for at most this long, and one larger than this is not fetched. A fetch cut
# short keeps its verified chunks, so a later attempt resumes it (file.get).
REPLICATE_FETCH_SECONDS = 600.0
REPLICATE_MAX_BYTES = 256 * 1024 * 1024
CATCH_UP_PAGE = 1000


@dataclass(frozen=True)
class RagSettings:
    corpora_dir: Path
    embedding_model: str
    retrieval: str = "hybrid"
    relevance_threshold: float = 0.3
    auto_replicate: bool = False
    default_corpus: str = ""
    hnsw_threshold: int = HNSW_THRESHOLD
    pdf_cpu_seconds: float = PDF_CPU_SECONDS

    @classmethod
    def from_config(cls, cfg: Any) -> "RagSettings":
        r = cfg.rag
        return cls(corpora_dir=r.corpora_dir, embedding_model=r.embedding_model or embedding_model(cfg.embedding),
                   retrieval=r.retrieval, relevance_threshold=r.relevance_threshold,
                   auto_replicate=r.auto_replicate, default_corpus=r.default_corpus,
                   pdf_cpu_seconds=r.pdf_cpu_seconds)


class RagService:
    name = "rag"

    def __init__(self, settings: RagSettings, bus: Any, blobs: BlobSource, node_id: str) -> None:
        self.settings = settings
        self.bus = bus
        self.node_id = node_id
        self.corpora = Corpora(settings.corpora_dir, hnsw_threshold=settings.hnsw_threshold)
        self.pipeline = IngestPipeline(self.corpora, blobs, bus, model=settings.embedding_model,
                                       node_id=node_id, append_event=self._append_event,
                                       pdf_cpu_seconds=settings.pdf_cpu_seconds)
        self.pipeline.on_new_corpus = lambda _name: self._changed()
        self.reindexer = Reindexer(self.corpora, blobs, bus, node_id=node_id,
                                   pdf_cpu_seconds=settings.pdf_cpu_seconds)
        self.announce_changes: Callable[[], None] | None = None  # set by the worker runtime
        self._tasks: set[asyncio.Task] = set()
        self._replicate: asyncio.Queue | None = None
        self._note = "opening corpora"
        self.asker = Asker.from_config(bus, node_id, settings)

    @classmethod
    def from_config(cls, cfg: Any) -> "RagService":
        from hearthnet.bus.client import BusClient
        from hearthnet.identity import keys

        kp = keys.load(cfg.identity.keys_dir)
        return cls(RagSettings.from_config(cfg), BusClient(cfg.paths.broker_clients_endpoint),
                   StoreBlobs(cfg.file.blobs_dir), kp.node_id_full)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        start = getattr(self.bus, "start", None)
        if start is not None:
            await start()
        names = await self.corpora.discover()
        self._refresh_note()
        log.info("corpora opened", extra={"corpora": names, "embedding_model": self.settings.embedding_model})
        if self.settings.auto_replicate:
            self._replicate = asyncio.Queue(REPLICATE_QUEUE)
            self._spawn(self._follow_events())
            self._spawn(self._replicator())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        close = getattr(self.bus, "close", None)
        if close is not None:
            await close()
        self.corpora.close()

    def health(self) -> dict[str, Any]:
        return {"note": self._note}

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refresh_note(self) -> None:
        names = self.corpora.names()
        self._note = f"{len(names)} corpora: {', '.join(names)}" if names else "no corpora yet"

    def _changed(self) -> None:
        self._refresh_note()
        if self.announce_changes is not None:
            self.announce_changes()

    # ------------------------------------------------------------------ capabilities

    def capabilities(self) -> list[Capability]:
        obj, text = {"type": "object"}, {"type": "string"}
        shared = sorted(n for n in self.corpora.names() if n != PERSONAL)

        def schema(params: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
            return {"type": "object", "properties": {"params": {"type": "object", "properties": params},
                                                     "input": {"type": "object", "properties": props}}}

        return [
            Capability(
                name="rag.query", handler=self.query, stability="beta", trust_required="member",
                request_schema=schema({"corpus": text, "embedding_model": text},
                                      {"query": text, "k": {"type": "integer", "minimum": 1, "maximum": MAX_K},
                                       "mode": {"enum": list(MODES)}, "filter": obj,
                                       "include_text": {"type": "boolean"}}),
                response_schema=obj,
                params={"corpora": shared, "embedding_models": {n: self.corpora.get(n).model for n in shared},
                        "k_max": MAX_K},
                max_concurrent=4, timeout_seconds=10, idempotent=True),
            Capability(
                name="rag.ingest", handler=self.ingest, stability="beta", trust_required="trusted",
                request_schema=schema({"corpus": text}, {"doc_cid": text, "title": text, "language": text,
                                                         "metadata": obj}),
                response_schema=obj, stream_schema={"type": "object", "properties": {"progress": obj, "done": obj}},
                params={"corpora_available": shared, "embedding_model": self.settings.embedding_model},
                max_concurrent=2, timeout_seconds=300, idempotent=True),
            Capability(
                name="rag.list_corpora", handler=self.list_corpora, stability="beta", trust_required="member",
                request_schema=schema({}, {}), response_schema=obj, max_concurrent=4, timeout_seconds=10,
                idempotent=True),
            Capability(
                name="rag.reindex", handler=self.reindex, stability="beta", trust_required="self",
                request_schema=schema({"corpus": text}, {"embedding_model": text}), response_schema=obj,
                stream_schema={"type": "object", "properties": {"progress": obj, "done": obj}},
                params={"corpora_available": sorted(self.corpora.names())},
                max_concurrent=1, timeout_seconds=REINDEX_TIMEOUT_SECONDS),
            self.asker.capability(),
        ]

    def _local(self, req: Request) -> bool:
        """The owner or a worker of this node, not a peer."""
        return req.caller == self.node_id

    def _corpus_for(self, req: Request, name: Any):
        name = check_corpus_name(name)
        if name == PERSONAL and not self._local(req):  # never answered to peers: as if absent
            raise HearthNetError("not_found", f"no corpus {name!r} on this node")
        return self.corpora.get(name)

    # ------------------------------------------------------------------ rag.query

    async def query(self, req: Request) -> dict[str, Any]:
        t0 = time.monotonic()
        corpus = self._corpus_for(req, req.params.get("corpus"))
        inp = req.input
        text, k, mode, where, include = _query_input(inp, self.settings.retrieval)
        wanted = req.params.get("embedding_model")
        if wanted is not None and wanted != corpus.model:
            raise HearthNetError("schema_mismatch", f"corpus {corpus.name!r} is embedded with {corpus.model!r}, "
                                                    f"not {wanted!r}: {reindex_hint(corpus.name)}")
        check_model(corpus, self.settings.embedding_model)
        hits = await self.search(corpus.name, text, k=k, mode=mode, where=where, trace=req.trace_id)
        chunks = []
        for rank, hit in enumerate(hits, start=1):
            item = {"rank": rank, "score": hit.score, "metadata": hit.metadata(), "ranks": hit.ranks}
            if include:
                item["text"] = hit.row["text"]
            chunks.append(item)
        return {"output": {"chunks": chunks},
                "meta": {"corpus": corpus.name, "ms": int((time.monotonic() - t0) * 1000),
                         "embedding_model": corpus.model, "mode": mode, "node": self.node_id}}

    async def search(self, corpus_name: str, text: str, *, k: int = DEFAULT_K, mode: str = "hybrid",
                     where: tuple[str, list[Any]] | None = None, trace: str = "") -> list[Hit]:
        """Embed the query with the corpus's model (over the bus) and rank its chunks:
        the retrieval `rag.ask` reuses."""
        corpus = self.corpora.get(corpus_name)
        vector = (await embedder.embed(self.bus, corpus.model, [text], caller=self.node_id, trace=trace))[0]
        if vector.shape[0] != corpus.store.dim:
            raise HearthNetError("schema_mismatch", f"{corpus.model} answered {vector.shape[0]}-dim vectors; corpus "
                                                    f"{corpus.name!r} holds {corpus.store.dim}: {reindex_hint(corpus.name)}")
        index = await corpus.ready()
        return await asyncio.to_thread(retrieve, corpus.store, index, vector, text, k=k, mode=mode, where=where)

    # ------------------------------------------------------------------ rag.ingest

    async def ingest(self, req: Request) -> Any:
        request = IngestRequest.from_body(req.params, req.input)
        if request.corpus == PERSONAL and not self._local(req):
            raise HearthNetError("unauthorized", "the personal corpus takes documents from this node's owner only")
        frames = _frames(lambda progress: self.pipeline.run(request, progress, trace=req.trace_id))
        return frames if req.stream else await done_data(frames)

    # ------------------------------------------------------------------ rag.reindex

    async def reindex(self, req: Request) -> Any:
        name = check_corpus_name(req.params.get("corpus"))
        model = check_model_name(req.input.get("embedding_model") or self.settings.embedding_model)
        self.corpora.get(name)  # not_found before the stream starts

        async def job(progress: Progress) -> dict[str, Any]:
            result = await self.reindexer.run(name, model, progress, trace=req.trace_id)
            self._changed()  # the corpus's model in rag.query's params
            if model != self.settings.embedding_model:
                result["meta"]["note"] = (f"this node embeds queries with {self.settings.embedding_model!r}: set "
                                          f"[rag] embedding_model = \"{model}\" to query {name!r} here")
            return result

        frames = _frames(job)
        return frames if req.stream else await done_data(frames)

    # ------------------------------------------------------------------ rag.list_corpora

    async def list_corpora(self, req: Request) -> dict[str, Any]:
        t0 = time.monotonic()
        names = self.corpora.names(include_personal=self._local(req))
        infos = await asyncio.to_thread(self.corpora.infos, names)
        return {"output": {"corpora": infos}, "meta": {"ms": int((time.monotonic() - t0) * 1000)}}

    # ------------------------------------------------------------------ the ledger

    async def _ledger(self, cap: str, inp: dict[str, Any]) -> dict[str, Any]:
        out = await self.bus.call(cap, "1.0", {"params": {}, "input": inp}, caller=self.node_id,
                                  timeout=LEDGER_TIMEOUT_SECONDS, node=self.node_id)
        return out.get("output") or {}

    async def _append_event(self, event_type: str, data: dict[str, Any]) -> str | None:
        """Our event's id; a ledger that does not answer costs the event, not the ingest."""
        try:
            out = await self._ledger("community.log.append", {"event_type": event_type, "data": data})
        except HearthNetError as exc:
            log.warning("could not append an event", extra={"event_type": event_type, "code": exc.code,
                                                             "reason": exc.message})
            return None
        event = out.get("event") or {}
        return event.get("event_id") if isinstance(event.get("event_id"), str) else None

    # ------------------------------------------------------------------ auto-replication

    async def _follow_events(self) -> None:
        """Every `rag.document.ingested` in the ledger goes to the replicator: on each
        (re)subscription, once it is live, the events stored so far (so none stored while
        it was down or being renewed is missed), then the live ones. An event offered
        twice costs a look-up, not a second ingest. A full queue holds the subscription
        up (if the ledger drops us meanwhile, the next catch-up has it all)."""
        while True:
            try:
                async for event, data in self.bus.stream("community.log.subscribe", "1.0",
                                                         {"params": {}, "input": {"event_types": [EVENT_TYPE]}},
                                                         caller=self.node_id, node=self.node_id, timeout=10 ** 7):
                    if event == "subscribed":
                        await self._catch_up()
                    elif event == "event" and isinstance(data, dict):
                        await self._offer(data)
                    elif event in ("done", "error"):
                        break
            except HearthNetError as exc:
                log.info("event subscription ended; renewing", extra={"code": exc.code})
            await asyncio.sleep(5)

    async def _catch_up(self) -> None:
        """The stored events, page by page in log order. Several events can share a
        lamport value, so a page normally starts again at its last one's value (the
        repeats are dropped); only a page holding nothing but one value moves past it."""
        since, seen = 0, set()
        while True:
            try:
                out = await self._ledger("community.log.events", {"event_types": [EVENT_TYPE], "since_lamport": since,
                                                                   "limit": CATCH_UP_PAGE})
            except HearthNetError as exc:
                log.info("could not read past ingest events", extra={"code": exc.code})
                return
            page = [ev for ev in out.get("events") or [] if isinstance(ev, dict)]
            new = [ev for ev in page if ev.get("event_id") not in seen]
            for ev in new:
                seen.add(ev.get("event_id"))
                await self._offer(ev)
            last = page[-1].get("lamport") if page else None
            if len(page) < CATCH_UP_PAGE or not isinstance(last, int):
                return
            since = last - 1 if last - 1 > since else last  # grows every page: the loop ends

    async def _offer(self, ev: dict[str, Any]) -> None:
        data = ev.get("data")
        if ev.get("event_type") != EVENT_TYPE or ev.get("author") == self.node_id or not isinstance(data, dict):
            return
        corpus, cid = data.get("corpus"), data.get("doc_cid")
        if not isinstance(corpus, str) or corpus == PERSONAL or not isinstance(cid, str):
            return
        title, language = data.get("title"), data.get("language")
        try:
            request = IngestRequest.from_body({"corpus": corpus}, {"doc_cid": cid,
                                                                   "title": title if isinstance(title, str) else None,
                                                                   "language": language if isinstance(language, str) else None})
        except HearthNetError:
            return  # a member's odd event: not ours to repair
        if self._replicate is not None:
            await self._replicate.put(request)

    async def _replicator(self) -> None:
        assert self._replicate is not None
        while True:
            request = await self._replicate.get()
            try:
                await self._replicate_one(request)
            except HearthNetError as exc:
                log.warning("could not replicate a document", extra={"corpus": request.corpus,
                                                                      "doc_cid": request.doc_cid,
                                                                      "code": exc.code, "reason": exc.message})
            except Exception:  # noqa: BLE001 - one member's document must not end replication for all
                log.exception("replicating a document failed", extra={"corpus": request.corpus,
                                                                       "doc_cid": request.doc_cid})

    async def _replicate_one(self, request: IngestRequest) -> None:
        corpus = self.corpora.get(request.corpus) if request.corpus in self.corpora else None
        if corpus is not None and await asyncio.to_thread(corpus.store.document, request.doc_cid):
            return

        async def quiet(_data: dict[str, Any]) -> None:
            return None

        await self._fetch(request.doc_cid)
        result = await self.pipeline.run(request, quiet)
        log.info("document replicated", extra={"corpus": request.corpus, "doc_cid": request.doc_cid,
                                                "chunks": result["output"]["chunks_indexed"]})

    async def _fetch(self, cid: str) -> None:
        """The blob into this node's store through its own file worker (file.get), within
        REPLICATE_FETCH_SECONDS and REPLICATE_MAX_BYTES. Leaving the stream cancels the
        call, at once (aclosing), not whenever the generator is collected."""
        frames = self.bus.stream("file.get", "1.0", {"params": {}, "input": {"cid": cid}}, caller=self.node_id,
                                 node=self.node_id, timeout=REPLICATE_FETCH_SECONDS)
        try:
            async with asyncio.timeout(REPLICATE_FETCH_SECONDS), contextlib.aclosing(frames):
                async for event, data in frames:
                    if event == "error":
                        raise HearthNetError.from_wire(data if isinstance(data, dict) else {})
                    size = _blob_size(event, data)
                    if size is not None and size > REPLICATE_MAX_BYTES:
                        raise HearthNetError("capacity_exceeded", f"{size} bytes: larger than the "
                                                                  f"{REPLICATE_MAX_BYTES} bytes replication takes")
                    if event == "done":
                        return
        except TimeoutError:
            raise HearthNetError("timeout", f"not fetched within {REPLICATE_FETCH_SECONDS:g} s") from None


def _blob_size(event: str, data: Any) -> int | None:
    """The blob's size as a file.get frame tells it: `total` while fetching, the
    manifest's `size_bytes` when done (also for a blob that was here already)."""
    if not isinstance(data, dict):
        return None
    if event == "done":
        manifest = data.get("manifest")
        size = manifest.get("size_bytes") if isinstance(manifest, dict) else None
    else:
        size = data.get("total") if data.get("stage") == "fetching" else None
    return size if type(size) is int else None


async def _frames(job: Callable[[Progress], Awaitable[dict[str, Any]]]) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """`progress` frames while the job runs, then `done` {output, meta}; a closed stream
    (the caller went away) cancels the job."""
    queue: asyncio.Queue = asyncio.Queue()

    async def progress(data: dict[str, Any]) -> None:
        queue.put_nowait(("progress", data))

    task = asyncio.ensure_future(job(progress))
    task.add_done_callback(lambda _t: queue.put_nowait(None))
    try:
        while True:
            item = await queue.get()
            if item is None:
                break
            yield item
        yield "done", task.result()  # raises the job's error, which ends the stream with it
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _query_input(inp: dict[str, Any], default_mode: str) -> tuple[str, int, str, Any, bool]:
    text = inp.get("query")
    if not isinstance(text, str) or not text.strip() or len(text) > QUERY_MAX_CHARS:
        raise HearthNetError("bad_request", f"input.query must be a non-empty string of at most {QUERY_MAX_CHARS} characters")
    k = inp.get("k", DEFAULT_K)
    if type(k) is not int or not 1 <= k <= MAX_K:
        raise HearthNetError("bad_request", f"input.k must be an integer 1-{MAX_K}")
    mode = inp.get("mode", default_mode)
    if mode not in MODES:
        raise HearthNetError("bad_request", f"input.mode must be one of {', '.join(MODES)}")
    include = inp.get("include_text", True)
    if not isinstance(include, bool):
        raise HearthNetError("bad_request", "input.include_text must be true or false")
    return text, k, mode, filter_clause(inp.get("filter")), include
