"""One document into one corpus (spec §3.3): blob -> text -> chunks -> vectors -> SQLite
-> `rag.document.ingested`.

The blob is read from this node's store through `BlobStore(read_only=True)` (the file
worker stays its only writer; the document must already be stored here, else
`not_found`). Vectors come from `embed.text` over the bus in batches, each batch a
progress step. The corpus is written in one transaction per document (store.py), so a
worker killed mid-ingest leaves the corpus as it was and the same call later redoes the
document; a document already in the corpus is a no-op that answers what was indexed.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol

import numpy as np

from hearthnet.blobs.cids import BlobError, check_cid
from hearthnet.errors import HearthNetError
from hearthnet.services.rag import embedder
from hearthnet.services.rag.chunker import chunk_document, context_prefix
from hearthnet.services.rag.corpora import Corpora, Corpus
from hearthnet.services.rag.extract import Extracted, extract
from hearthnet.services.rag.lang import guess_language
from hearthnet.services.rag.store import PERSONAL, ChunkRow, DocumentRow, check_corpus_name, chunk_id_for
from hearthnet.services.rag.tokens import budget_for, counter_for

log = logging.getLogger("hearthnet.rag.ingest")

TITLE_MAX, LANGUAGE_MAX = 512, 16
METADATA_MAX_KEYS = 32
EVENT_TYPE = "rag.document.ingested"


@dataclass
class Blob:
    data: bytes
    filename: str | None
    mime_type: str | None


class BlobSource(Protocol):
    def read(self, cid: str) -> Blob: ...


class StoreBlobs:
    """The node's blob store, read-only (the file worker owns it)."""

    def __init__(self, root: Path) -> None:
        from hearthnet.blobs.store import BlobStore

        self.root = Path(root)
        self._store: Any = None
        self._cls = BlobStore

    def read(self, cid: str) -> Blob:
        if self._store is None:  # the file worker may create the directory after we start
            if not self.root.is_dir():
                raise HearthNetError("not_found", f"blob {cid} is not stored on this node (no blob store yet)")
            self._store = self._cls(self.root, read_only=True, min_free_bytes=0)
        try:
            manifest = self._store.read_manifest(cid)
            data = self._store.read_blob_bytes(cid)
        except BlobError as exc:
            if exc.code == "not_found":
                raise HearthNetError("not_found", f"blob {cid} is not (completely) stored on this node; "
                                                  "`hearthnet file add` or `file get` it first") from None
            raise HearthNetError(exc.code, exc.message) from None
        return Blob(data, manifest.filename, manifest.mime_type)


Progress = Callable[[dict[str, Any]], Awaitable[None]]
EventAppender = Callable[[str, dict[str, Any]], Awaitable[str | None]]


@dataclass
class IngestRequest:
    corpus: str
    doc_cid: str
    title: str | None = None
    language: str | None = None
    metadata: dict[str, Any] | None = None

    @classmethod
    def from_body(cls, params: dict[str, Any], inp: dict[str, Any]) -> "IngestRequest":
        corpus = check_corpus_name(params.get("corpus"))
        try:
            doc_cid = check_cid(inp.get("doc_cid"), "input.doc_cid")
        except BlobError as exc:
            raise HearthNetError("bad_request", exc.message) from None
        title, language, metadata = inp.get("title"), inp.get("language"), inp.get("metadata")
        if title is not None and (not isinstance(title, str) or not 0 < len(title) <= TITLE_MAX):
            raise HearthNetError("bad_request", f"input.title must be a string of 1-{TITLE_MAX} characters")
        if language is not None and (not isinstance(language, str) or not re.fullmatch(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*", language)
                                     or len(language) > LANGUAGE_MAX):
            raise HearthNetError("bad_request", "input.language must be a language tag such as \"de\" or \"en-GB\"")
        if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > METADATA_MAX_KEYS
                                     or not all(isinstance(k, str) and re.fullmatch(r"[a-z_][a-z0-9_]{0,63}", k)
                                                and isinstance(v, (str, int, float, bool)) and not
                                                (isinstance(v, str) and len(v) > 1024)
                                                for k, v in metadata.items())):
            raise HearthNetError("bad_request", f"input.metadata must be an object of at most {METADATA_MAX_KEYS} "
                                                "keys [a-z_][a-z0-9_]* with string, number or boolean values")
        return cls(corpus, doc_cid, title, language.lower().replace("_", "-") if language else None, metadata or {})


class IngestPipeline:
    def __init__(self, corpora: Corpora, blobs: BlobSource, bus: embedder.Bus, *, model: str,
                 node_id: str, append_event: EventAppender, pdf_cpu_seconds: float | None = None) -> None:
        self.corpora = corpora
        self.pdf_cpu_seconds = pdf_cpu_seconds
        self.blobs = blobs
        self.bus = bus
        self.model = model
        self.node_id = node_id
        self.append_event = append_event
        self.on_new_corpus: Callable[[str], None] | None = None

    async def run(self, req: IngestRequest, progress: Progress, *, trace: str = "") -> dict[str, Any]:
        """Ingest (or find) the document; returns {"output", "meta"}."""
        t0 = time.monotonic()
        existing = self._existing_corpus(req.corpus)
        if existing is not None:
            done = await self._already(existing, req, t0)
            if done is not None:
                return done
        blob = await asyncio.to_thread(self.blobs.read, req.doc_cid)
        await progress({"stage": "extracting", "current": 0, "total": 1})
        doc = await asyncio.to_thread(extract, blob.data, blob.filename, blob.mime_type,
                                      pdf_cpu_seconds=self.pdf_cpu_seconds)
        title = req.title or doc.title or blob.filename or req.doc_cid[:19]
        language = req.language or guess_language(" ".join(u.text[:2000] for u in doc.units[:5]))
        chunks, texts = await asyncio.to_thread(self._chunks, doc, req.doc_cid, title)
        if not chunks:
            raise HearthNetError("bad_request", f"{title}: no text to index")
        await progress({"stage": "chunking", "current": doc.pages, "total": doc.pages, "pages": doc.pages,
                        "chunks": len(chunks)})
        vectors = await embed_all(self.bus, self.model, texts, progress, caller=self.node_id, trace=trace)
        await progress({"stage": "storing", "current": 0, "total": len(chunks)})
        row = DocumentRow(req.doc_cid, title, language, doc.kind, doc.pages,
                          {**(req.metadata or {}), **({"filename": blob.filename} if blob.filename else {})},
                          len(blob.data))
        corpus, created, ids = await self._store(req.corpus, row, chunks, vectors)
        if created and self.on_new_corpus is not None:
            self.on_new_corpus(corpus.name)
        if not ids:  # a concurrent ingest of the same document won
            return await self._already(corpus, req, t0) or {}
        event_id = await self._event(corpus, req.doc_cid, title, language, len(chunks))
        tokens = sum(c.tokens for c in chunks)
        log.info("document ingested", extra={"corpus": corpus.name, "doc_cid": req.doc_cid, "chunks": len(chunks),
                                             "pages": doc.pages, "ms": _ms(t0)})
        return _result(req.doc_cid, corpus.name, len(chunks), tokens, doc.pages, event_id, t0, already=False)

    def _existing_corpus(self, name: str) -> Corpus | None:
        try:
            return self.corpora.get(name)
        except HearthNetError:
            return None

    async def _already(self, corpus: Corpus, req: IngestRequest, t0: float) -> dict[str, Any] | None:
        check_model(corpus, self.model)
        found = await asyncio.to_thread(corpus.store.document, req.doc_cid)
        if found is None:
            return None
        event_id = found["event_id"]
        if event_id is None:  # stored, but the ledger did not take the event last time: try again
            event_id = await self._event(corpus, req.doc_cid, found["title"], found["language"], found["chunks"])
        return _result(req.doc_cid, corpus.name, found["chunks"], found["tokens"], found["pages"], event_id, t0,
                       already=True)

    def _chunks(self, doc: Extracted, doc_cid: str, title: str) -> tuple[list[ChunkRow], list[str]]:
        return chunk_rows(doc, doc_cid, title, self.model)

    async def _store(self, name: str, row: DocumentRow, chunks: list[ChunkRow],
                     vectors: np.ndarray) -> tuple[Corpus, bool, list[int]]:
        """The document into the corpus (created with this node's model if new): its
        chunks and vectors in SQLite and the index. A corpus replaced by a reindex while
        we waited for its lock is left for its successor."""
        while True:
            corpus, created = await self.corpora.get_or_create(name, self.model, int(vectors.shape[1]),
                                                               budget_meta(self.model))
            check_model(corpus, self.model)
            if corpus.store.dim != vectors.shape[1]:
                raise HearthNetError("schema_mismatch", f"{self.model} gives {vectors.shape[1]}-dim vectors; corpus "
                                                        f"{name!r} holds {corpus.store.dim}: {reindex_hint(name)}")
            index = await corpus.ready()  # an index still loading must see these vectors in its stamp or get them here
            async with corpus.write_lock:
                if corpus.retired:
                    continue
                ids = await asyncio.to_thread(corpus.store.add_document, row, chunks, vectors)
                await asyncio.to_thread(index.add, ids, vectors)
                return corpus, created, ids

    async def _event(self, corpus: Corpus, doc_cid: str, title: str, language: str | None, chunks: int) -> str | None:
        if corpus.name == PERSONAL:  # local only: the community never hears of it
            return None
        event_id = await self.append_event(EVENT_TYPE, {"corpus": corpus.name, "doc_cid": doc_cid, "title": title,
                                                         "language": language, "chunks": chunks})
        if event_id:
            await asyncio.to_thread(corpus.store.set_event_id, doc_cid, event_id)
        return event_id


def chunk_rows(doc: Extracted, doc_cid: str, title: str, model: str) -> tuple[list[ChunkRow], list[str]]:
    """The document's chunks sized for `model`'s window, and the texts to embed (each
    chunk behind its title and heading path)."""
    counter, budget = counter_for(model), budget_for(model)
    rows, texts = [], []
    for index, (unit, span) in enumerate(chunk_document(doc, budget, counter)):
        text = unit.text[span.start:span.end]
        rows.append(ChunkRow(chunk_id_for(doc_cid, index), index, span.page, span.start, span.end,
                             span.heading_path, span.tokens, text))
        texts.append(embed_text(title, span.heading_path, text, model))
    return rows, texts


def embed_text(title: str, heading_path: tuple[str, ...], text: str, model: str) -> str:
    prefix = context_prefix(title, heading_path, counter_for(model))
    return f"{prefix}\n{text}" if prefix else text


async def embed_all(bus: embedder.Bus, model: str, texts: list[str], progress: Progress, *, caller: str,
                    trace: str, stage: dict[str, Any] | None = None) -> np.ndarray:
    """Vectors for `texts` in batches, a progress frame after each (`stage` adds keys)."""
    parts, t0 = [], time.monotonic()
    for k in range(0, len(texts), embedder.EMBED_BATCH):
        parts.append(await embedder.embed(bus, model, texts[k:k + embedder.EMBED_BATCH], caller=caller, trace=trace))
        done = min(len(texts), k + embedder.EMBED_BATCH)
        rate = done / max(time.monotonic() - t0, 1e-6)
        await progress({"stage": "embedding", "current": done, "total": len(texts), "embed_rate": round(rate, 1),
                        **(stage or {})})
    return np.concatenate(parts)


def check_model(corpus: Corpus, model: str) -> None:
    if corpus.model != model:
        raise HearthNetError("schema_mismatch", f"corpus {corpus.name!r} was embedded with {corpus.model!r}, "
                                                f"this node embeds with {model!r}: {reindex_hint(corpus.name)}",
                             corpus_model=corpus.model, node_model=model)


def reindex_hint(corpus: str) -> str:
    return f"run `hearthnet rag reindex --corpus {corpus}` (or query with the corpus's model)"


def budget_meta(model: str) -> dict[str, int]:
    b = budget_for(model)
    return {"chunk_window": b.window, "chunk_target": b.target, "chunk_overlap": b.overlap}


def _result(doc_cid: str, corpus: str, chunks: int, tokens: int, pages: int, event_id: str | None, t0: float, *,
            already: bool) -> dict[str, Any]:
    return {"output": {"doc_cid": doc_cid, "chunks_indexed": chunks, "tokens_indexed": tokens, "pages": pages,
                       "already_indexed": already},
            "meta": {"corpus": corpus, "ms": _ms(t0), "ingest_event_id": event_id}}


def _ms(t0: float) -> int:
    return int((time.monotonic() - t0) * 1000)
