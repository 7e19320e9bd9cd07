"""`rag.reindex`: rebuild one corpus with an embedding model (the node's, or another
one), its chunks sized for that model's window.

The successor is built beside the live corpus (`Corpora.staging_dir`), which keeps
answering queries and taking ingests meanwhile; documents ingested during the build are
picked up in a last pass under the corpus's write lock, then `Corpora.swap` puts the new
corpus in place with two renames. A worker killed at any point leaves the old corpus
whole (corpora.py repairs at start); a cancelled call deletes its half-built successor.

Each document is re-extracted from its source blob; one whose blob is no longer in this
node's store is re-embedded from its stored chunks (counted in `from_stored_chunks`), so
a reindex never loses a document.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
import time
from typing import Any

import numpy as np

from hearthnet.errors import HearthNetError
from hearthnet.services.rag import embedder
from hearthnet.services.rag.corpora import Corpora, Corpus
from hearthnet.services.rag.extract import extract
from hearthnet.services.rag.ingest import (BlobSource, Progress, budget_meta, chunk_rows, embed_all,
                                           embed_text)
from hearthnet.services.rag.store import ChunkRow, CorpusStore, DocumentRow

log = logging.getLogger("hearthnet.rag.reindex")

MODEL_MAX_CHARS = 256
DIM_PROBE = "dimension probe"  # embedded once when the corpus holds no document


def check_model_name(model: Any) -> str:
    if not isinstance(model, str) or not 0 < len(model) <= MODEL_MAX_CHARS or not model.isprintable():
        raise HearthNetError("bad_request", f"input.embedding_model must be a model name of 1-{MODEL_MAX_CHARS} characters")
    return model


class Reindexer:
    def __init__(self, corpora: Corpora, blobs: BlobSource, bus: embedder.Bus, *, node_id: str,
                 pdf_cpu_seconds: float | None = None) -> None:
        self.corpora = corpora
        self.pdf_cpu_seconds = pdf_cpu_seconds
        self.blobs = blobs
        self.bus = bus
        self.node_id = node_id

    async def run(self, name: str, model: str, progress: Progress, *, trace: str = "") -> dict[str, Any]:
        """Rebuild corpus `name` with `model`; returns {"output", "meta"}."""
        t0 = time.monotonic()
        old = self.corpora.get(name)
        staging = self.corpora.staging_dir(name)
        await asyncio.to_thread(shutil.rmtree, staging, True)
        build = _Build(self, old, model, progress, trace)
        try:
            await build.pass_over(await asyncio.to_thread(old.store.documents))
            async with old.write_lock:  # ingests wait here; they then write to the successor
                done = {d["doc_cid"] for d in build.docs}
                await build.pass_over([d for d in await asyncio.to_thread(old.store.documents)
                                       if d["doc_cid"] not in done])
                await build.finish()
                new = await self.corpora.swap(old)
        except BaseException:  # a failure or a cancelled call (the caller left): no half-built successor stays
            build.abandon()
            await asyncio.to_thread(shutil.rmtree, staging, True)
            raise
        info = await asyncio.to_thread(new.store.info)
        log.info("corpus reindexed", extra={"corpus": name, "embedding_model": model, "docs": info["docs"],
                                            "chunks": info["chunks"], "from_stored_chunks": build.from_chunks})
        return {"output": {"corpus": name, "embedding_model": model, "dim": new.store.dim, "docs": info["docs"],
                           "chunks": info["chunks"], "from_stored_chunks": build.from_chunks},
                "meta": {"ms": int((time.monotonic() - t0) * 1000), "previous_model": old.model}}


class _Build:
    """One reindex's successor store, filled a document at a time."""

    def __init__(self, owner: Reindexer, old: Corpus, model: str, progress: Progress, trace: str) -> None:
        self.owner, self.old, self.model = owner, old, model
        self.progress, self.trace = progress, trace
        self.store: CorpusStore | None = None
        self.docs: list[dict[str, Any]] = []
        self.from_chunks = 0
        self.chunks = 0
        self.total = 0

    async def pass_over(self, docs: list[dict[str, Any]]) -> None:
        self.total += len(docs)
        for doc in docs:
            chunks, texts = await asyncio.to_thread(self._chunks, doc)
            vectors = await embed_all(self.owner.bus, self.model, texts, self._embedding, caller=self.owner.node_id,
                                      trace=self.trace) if texts else np.zeros((0, 0), dtype=np.float32)
            store = await self._open(int(vectors.shape[1]) if len(texts) else None)
            row = DocumentRow(doc["doc_cid"], doc["title"], doc["language"], doc["kind"], doc["pages"],
                              doc["metadata"], doc["size_bytes"])
            await asyncio.to_thread(store.add_document, row, chunks, vectors.reshape(len(chunks), store.dim))
            if doc["event_id"]:
                await asyncio.to_thread(store.set_event_id, doc["doc_cid"], doc["event_id"])
            self.docs.append(doc)
            self.chunks += len(chunks)
            await self.progress({"stage": "reindexing", "current": len(self.docs), "total": self.total,
                                 "chunks": self.chunks})

    async def _embedding(self, frame: dict[str, Any]) -> None:
        """A document's embedding progress, framed as the corpus's."""
        await self.progress({**frame, "stage": "embedding", "current": len(self.docs), "total": self.total,
                             "doc_chunks": frame["current"], "doc_chunks_total": frame["total"]})

    def _chunks(self, doc: dict[str, Any]) -> tuple[list[ChunkRow], list[str]]:
        """From the source blob when this node still has it, else from the stored chunks."""
        try:
            blob = self.owner.blobs.read(doc["doc_cid"])
            return chunk_rows(extract(blob.data, blob.filename, blob.mime_type,
                                      pdf_cpu_seconds=self.owner.pdf_cpu_seconds), doc["doc_cid"], doc["title"],
                              self.model)
        except HearthNetError as exc:  # gone (GC, deleted) or no longer readable: what we indexed stays
            log.info("source not readable; re-embedding the stored chunks",
                     extra={"corpus": self.old.name, "doc_cid": doc["doc_cid"], "code": exc.code})
        self.from_chunks += 1
        rows = self.old.store.chunk_rows(doc["doc_cid"])
        return rows, [embed_text(doc["title"], r.heading_path, r.text, self.model) for r in rows]

    async def _open(self, dim: int | None) -> CorpusStore:
        if self.store is None:
            if dim is None:
                probe = await embedder.embed(self.owner.bus, self.model, [DIM_PROBE], caller=self.owner.node_id,
                                             trace=self.trace)
                dim = int(probe.shape[1])
            corpora, name = self.owner.corpora, self.old.name
            self.store = await asyncio.to_thread(
                CorpusStore(corpora.root, name, directory=corpora.staging_dir(name)).open,
                create_with=(self.model, dim), budget=budget_meta(self.model))
        return self.store

    async def finish(self) -> None:
        """The successor closed (its WAL folded in), ready for the swap; an empty corpus
        gets its store (and model) too."""
        store = await self._open(None)
        await asyncio.to_thread(store.close)
        self.store = None

    def abandon(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
