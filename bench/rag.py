"""RAG benchmark: ingest throughput and query latency against raw baselines in the same run.

    .venv/bin/python bench/rag.py [--sizes 10000,100000] [--queries 300] [--pages 60]

1. Ingest: a generated PDF (`--pages` pages of preparedness-style text) through the real
   pipeline (extract, chunk, embed, one SQLite transaction, index), pages/s and chunks/s,
   once with the real all-MiniLM-L6-v2 backend (when the embedding service is installed)
   and once with a trivial embedder (the pipeline's own ceiling).
2. Query: N synthetic unit vectors (dim 384, clustered around topics as sentence
   embeddings are; queries near stored vectors) stored in a real corpus; p50/p99 of
   `VectorIndex.search(q, 5)` (exact numpy below 20 000 chunks, HNSW above) vs a numpy
   brute-force dot product + top-5 over the same matrix, alternating, in the same run;
   plus the whole `retrieve()` (vector and hybrid: FTS5 BM25, fusion, rows from SQLite).
"""
from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hearthnet.blobs.store import BlobStore  # noqa: E402
from hearthnet.services.rag.corpora import Corpora  # noqa: E402
from hearthnet.services.rag.index import VectorIndex, top_k, unit  # noqa: E402
from hearthnet.services.rag.ingest import IngestPipeline, IngestRequest, StoreBlobs  # noqa: E402
from hearthnet.services.rag.retrieve import retrieve  # noqa: E402
from hearthnet.services.rag.store import ChunkRow, CorpusStore, DocumentRow  # noqa: E402
from hearthnet.testing.pdfs import make_pdf  # noqa: E402

DIM = 384
VOCAB = 20_000
WORDS = ("water shelter flood pump generator radio battery torch blanket medicine siren route dyke school "
         "gym kitchen fuel candle bleach boil filter food freezer fridge warden neighbour evacuation "
         "bandage burn fever insulin charger phone mesh node map bridge river street cellar sandbag").split()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


# ------------------------------------------------------------------ ingest


class Embed:
    """embed.text over a backend object (MiniLM) or a trivial stand-in."""

    def __init__(self, backend: Any | None, model: str) -> None:
        self.backend, self.model = backend, model

    async def call(self, cap: str, version: str, body: Any, **kw: Any) -> dict[str, Any]:
        if cap != "embed.text":
            return {"output": {"event": {"event_id": "bench"}}}
        texts = body["input"]["texts"]
        if self.backend is None:
            rng = np.random.default_rng(len(texts))
            vecs = unit(rng.standard_normal((len(texts), DIM)).astype(np.float32))
        else:
            vecs = await self.backend.embed(texts, normalize=True)
        return {"output": {"embeddings": vecs.tolist(), "dim": DIM}, "meta": {"model": self.model}}


def pdf_pages(n: int) -> bytes:
    rng = random.Random(7)
    pages = []
    for p in range(n):
        lines = []
        for s in range(40):  # ~400 words a page, like a dense leaflet
            lines.append(" ".join(rng.choice(WORDS) for _ in range(10)).capitalize() + ".")
        pages.append(lines)
    return make_pdf(pages, title="Bench leaflet")


async def ingest_once(root: Path, data: bytes, backend: Any | None, model: str) -> tuple[float, int, int]:
    blobs = BlobStore(root / "blobs", min_free_bytes=0)
    cid = blobs.add_bytes(data, filename="leaflet.pdf").cid
    corpora = Corpora(root / "embeddings")
    bus = Embed(backend, model)

    async def event(_t: str, _d: dict[str, Any]) -> str:
        return "bench"

    pipe = IngestPipeline(corpora, StoreBlobs(root / "blobs"), bus, model=model, node_id="bench", append_event=event)

    async def quiet(_d: dict[str, Any]) -> None:
        return None

    t0 = time.perf_counter()
    out = await pipe.run(IngestRequest("bench", cid), quiet)
    secs = time.perf_counter() - t0
    corpora.close()
    return secs, out["output"]["pages"], out["output"]["chunks_indexed"]


def bench_ingest(pages: int) -> list[str]:
    data = pdf_pages(pages)
    rows = []
    backends: list[tuple[str, Any, str]] = [("trivial embedder", None, "bench-trivial")]
    try:
        from hearthnet.services.embedding import minilm

        if minilm.unavailable_reason() is None:
            backend = minilm.MiniLmBackend()
            asyncio.run(backend.warm())
            backends.insert(0, ("all-MiniLM-L6-v2", backend, "all-MiniLM-L6-v2"))
    except ImportError:
        rows.append("(embedding service not installed: MiniLM ingest skipped)")
    for label, backend, model in backends:
        with tempfile.TemporaryDirectory() as tmp:
            secs, n_pages, n_chunks = asyncio.run(ingest_once(Path(tmp), data, backend, model))
        rows.append(f"ingest {label}: {n_pages} pages, {n_chunks} chunks in {secs:.2f} s = "
                    f"{n_pages / secs:.1f} pages/s, {n_chunks / secs:.1f} chunks/s")
    return rows


# ------------------------------------------------------------------ query


def clustered(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit vectors around topics, as sentence embeddings are (uniform random vectors in
    384 dimensions have no near neighbours to find, so no index can be judged on them)."""
    topics = rng.standard_normal((max(10, n // 50), DIM)).astype(np.float32)
    return unit(topics[rng.integers(0, len(topics), n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32))


def build_corpus(root: Path, n: int, rng: np.random.Generator) -> tuple[CorpusStore, np.ndarray]:
    store = CorpusStore(root, "bench").open(create_with=("synthetic", DIM))
    vectors = clustered(rng, n)
    # Text for FTS5: 50 words a chunk drawn Zipf-like from a 20 000-word vocabulary, as in prose.
    words = np.array([f"w{i}" for i in range(VOCAB)])
    p = 1.0 / np.arange(1, VOCAB + 1)
    p /= p.sum()
    per_doc = 1000
    for d in range(0, n, per_doc):
        m = min(per_doc, n - d)
        drawn = rng.choice(VOCAB, size=(m, 50), p=p)
        chunks = [ChunkRow(f"d{d:07d}-{i:04d}", i, None, 0, 0, (), 50, " ".join(words[drawn[i]]))
                  for i in range(m)]
        store.add_document(DocumentRow(f"blake3:{d:064d}", f"doc {d}", "en", "text", 1, {}, 0), chunks,
                           vectors[d:d + m])
    return store, vectors


def time_calls(fn: Any, queries: np.ndarray) -> list[float]:
    out = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def bench_query(n: int, n_queries: int) -> list[str]:
    rng = np.random.default_rng(n)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store, vectors = build_corpus(Path(tmp), n, rng)
        t_store = time.perf_counter() - t0
        t0 = time.perf_counter()
        index = VectorIndex(store).load()
        t_index = time.perf_counter() - t0
        # the baseline reads the same vectors from the same memory as the exact index (two
        # 15 MB copies read in turn evict each other from the cache and slow both)
        matrix = index.matrix if index.mode == "exact" else np.ascontiguousarray(vectors)
        # queries near stored passages, as a question is near its answer
        queries = unit(matrix[rng.integers(0, n, n_queries)] + 0.5 * rng.standard_normal((n_queries, DIM)).astype(np.float32))

        def raw(q: np.ndarray) -> Any:
            return top_k(matrix @ q, 5)

        def dot_only(q: np.ndarray) -> Any:
            return matrix @ q

        def ours(q: np.ndarray) -> Any:
            return index.search(q, 5)

        for fn in (raw, ours):  # warm caches
            time_calls(fn, queries[:20])
        ours_ms, raw_ms, dot_ms = [], [], []
        for r in range(3):  # interleaved query by query: the shared machine's load hits all alike
            for q in queries:
                for fn, out in ((ours, ours_ms), (raw, raw_ms), (dot_only, dot_ms)):
                    out += time_calls(fn, q[None, :])
        # recall of the index against the exact answer
        exact = [set(int(i) + 1 for i in top_k(vectors @ q, 5)) for q in queries[:100]]  # chunk ids are 1..n
        got = [set(index.search(q, 5)) for q in queries[:100]]
        recall = statistics.mean(len(a & b) / 5 for a, b in zip(exact, got))
        # keyword queries: 3 words of middling frequency (ranks 50-5000), as a question's content words
        qwords = [" ".join(f"w{j}" for j in rng.integers(50, 5000, 3)) for _ in range(100)]
        full_v = time_calls(lambda q: retrieve(store, index, q, "", k=5, mode="vector"), queries[:100])
        it = iter(qwords)
        full_h = time_calls(lambda q: retrieve(store, index, q, next(it), k=5, mode="hybrid"), queries[:100])
        store.close()
    p50o, p99o, p50r, p99r = pct(ours_ms, 50), pct(ours_ms, 99), pct(raw_ms, 50), pct(raw_ms, 99)
    return [
        f"{n:>7} chunks ({index.mode}; corpus written in {t_store:.1f} s, index loaded/built in {t_index:.1f} s): "
        f"search p50 {p50o:.3f} ms p99 {p99o:.3f} ms | numpy dot+top5 p50 {p50r:.3f} ms p99 {p99r:.3f} ms "
        f"(dot alone p50 {pct(dot_ms, 50):.3f}) | ratio p50 {p50o / p50r:.2f}x p99 {p99o / p99r:.2f}x | "
        f"recall@5 vs exact {recall:.3f}",
        f"{'':>7} whole retrieve(): vector p50 {pct(full_v, 50):.2f} ms p99 {pct(full_v, 99):.2f} ms; "
        f"hybrid p50 {pct(full_h, 50):.2f} ms p99 {pct(full_h, 99):.2f} ms",
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--pages", type=int, default=60)
    ap.add_argument("--skip-ingest", action="store_true")
    args = ap.parse_args()
    if not args.skip_ingest:
        for line in bench_ingest(args.pages):
            print(line, flush=True)
    for n in (int(s) for s in args.sizes.split(",")):
        for line in bench_query(n, args.queries):
            print(line, flush=True)


if __name__ == "__main__":
    main()
