"""The vector index of one corpus: derived data, rebuilt from corpus.sqlite when missing
or stale.

Small corpora (< HNSW_THRESHOLD chunks) are searched exactly: one matrix-vector product
in numpy over the corpus's unit vectors, which at 10 k chunks costs what a brute-force
dot product costs. Larger ones use a usearch HNSW graph (cosine), saved next to the
database as `vectors.usearch` (written to a temp file, then renamed) with
`vectors.json` recording the (count, highest chunk id) of the SQLite state it was built
from; a file that does not match the database on open is rebuilt.

Every score handed out is the cosine similarity of the query and the chunk's own stored
vector (both unit length), never the approximate graph distance: `score(q, ids)`.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time

import numpy as np

from hearthnet.fsutil import atomic_write
from hearthnet.services.rag.store import CorpusStore

log = logging.getLogger("hearthnet.rag.index")

HNSW_THRESHOLD = 20_000  # chunks; below this an exact numpy search is as fast and exact
SAVE_INTERVAL_SECONDS = 60.0  # a big graph is rewritten at most this often while documents arrive
OVERSAMPLE = 8  # filtered HNSW search: ask for this many times the candidates, then filter
RERANK = 128  # HNSW candidates re-ranked exactly: the graph's top 5 alone misses ~1 in 5 true neighbours
GRAPH = {"metric": "cos", "dtype": "f16", "connectivity": 16, "expansion_add": 64, "expansion_search": 512}
INDEX_FILE, STAMP_FILE = "vectors.usearch", "vectors.json"


def unit(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(norms == 0, 1, norms)


def top_k(sims: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest values, best first."""
    if len(sims) <= k:
        return np.argsort(-sims, kind="stable")
    part = np.argpartition(-sims, k - 1)[:k]
    return part[np.argsort(-sims[part], kind="stable")]


class VectorIndex:
    def __init__(self, store: CorpusStore, *, threshold: int = HNSW_THRESHOLD) -> None:
        self.store = store
        self.dim = store.dim
        self.threshold = threshold
        self.ids = np.zeros(0, dtype=np.int64)
        self.matrix = np.zeros((0, self.dim), dtype=np.float32)  # exact mode only
        self.hnsw = None  # usearch.index.Index above the threshold
        self.stamp = (0, 0)
        self._lock = threading.Lock()  # searches and updates never interleave
        self._saved_at = 0.0
        self._dirty = False

    @property
    def count(self) -> int:
        return int(len(self.ids))

    @property
    def mode(self) -> str:
        return "hnsw" if self.hnsw is not None else "exact"

    # ------------------------------------------------------------------ building

    def load(self) -> "VectorIndex":
        """Bring the index in line with the database: from the saved graph when it
        matches, else rebuilt."""
        with self._lock:
            stamp = self.store.stamp()
            if stamp[0] >= self.threshold and self._load_saved(stamp):
                return self
            ids, matrix = self.store.all_vectors()
            self._set(ids, unit(matrix), stamp)
        return self

    def add(self, ids: list[int], vectors: np.ndarray) -> None:
        """Vectors just committed to the database (ids above every stored one)."""
        if not ids:
            return
        with self._lock:
            ids_a = np.asarray(ids, dtype=np.int64)
            vecs = unit(vectors)
            stamp = (self.stamp[0] + len(ids), max(self.stamp[1], int(ids_a.max())))
            if self.hnsw is not None:
                self.hnsw.add(ids_a, vecs)
                self.ids = np.concatenate([self.ids, ids_a])
                self.stamp = stamp
                self._dirty = True
                if time.monotonic() - self._saved_at >= SAVE_INTERVAL_SECONDS:
                    self._save()
            else:
                self._set(np.concatenate([self.ids, ids_a]), np.concatenate([self.matrix, vecs]), stamp)

    def _set(self, ids: np.ndarray, matrix: np.ndarray, stamp: tuple[int, int]) -> None:
        self.ids, self.stamp = ids, stamp
        if len(ids) >= self.threshold:
            self.hnsw = self._build(ids, matrix)
            self.matrix = np.zeros((0, self.dim), dtype=np.float32)  # the graph holds the vectors
            self._save()
        else:
            self.hnsw, self.matrix = None, np.ascontiguousarray(matrix)

    def _build(self, ids: np.ndarray, matrix: np.ndarray):  # -> usearch Index
        from usearch.index import Index

        index = Index(ndim=self.dim, **GRAPH)
        index.add(ids, matrix)
        log.info("built the HNSW index", extra={"corpus": self.store.name, "vectors": len(ids)})
        return index

    def flush(self) -> None:
        """Save a graph that changed since it was last saved (at stop)."""
        with self._lock:
            if self.hnsw is not None and self._dirty:
                self._save()

    def _save(self) -> None:
        """The graph, then the stamp saying which SQLite state it matches: a crash between
        the two leaves an old stamp, so the next start rebuilds rather than trusts it."""
        self._dirty, self._saved_at = False, time.monotonic()
        path = self.store.dir / INDEX_FILE
        tmp = path.with_name(f".{INDEX_FILE}.{os.getpid()}.tmp")
        try:
            self.hnsw.save(str(tmp))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        atomic_write(self.store.dir / STAMP_FILE, json.dumps(
            {"count": self.stamp[0], "max_id": self.stamp[1], "dim": self.dim,
             "embedding_model": self.store.model}).encode())

    def _load_saved(self, stamp: tuple[int, int]) -> bool:
        from usearch.index import Index

        try:
            saved = json.loads((self.store.dir / STAMP_FILE).read_text())
            if (saved.get("count"), saved.get("max_id"), saved.get("dim")) != (*stamp, self.dim):
                return False
            index = Index(ndim=self.dim, **GRAPH)
            index.load(str(self.store.dir / INDEX_FILE))
            if len(index) != stamp[0]:
                return False
        except (OSError, ValueError, RuntimeError) as exc:
            log.info("vector index missing or unreadable; rebuilding", extra={"reason": str(exc)})
            return False
        self.hnsw = index
        self.ids = np.asarray(index.keys, dtype=np.int64) if hasattr(index, "keys") else self.store.all_vectors()[0]
        self.matrix = np.zeros((0, self.dim), dtype=np.float32)
        self.stamp = stamp
        return True

    # ------------------------------------------------------------------ search

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[int]:
        """Ids of the k nearest chunks (cosine), best first; `allowed` restricts them."""
        q = unit(query)
        with self._lock:
            return self._search(q, k, allowed)

    def _search(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> list[int]:
        if allowed is not None and len(allowed) == 0:
            return []
        if self.hnsw is None:
            if allowed is None:
                return [int(self.ids[i]) for i in top_k(self.matrix @ q, k)]
            mask = np.isin(self.ids, allowed)
            ids, matrix = self.ids[mask], self.matrix[mask]
            return [int(ids[i]) for i in top_k(matrix @ q, k)]
        if allowed is not None and len(allowed) < self.threshold:
            ids, matrix = self.store.vectors_for(allowed.tolist())  # exact over the few allowed
            return [int(ids[i]) for i in top_k(unit(matrix) @ q, k)]
        pool = max(k, RERANK)
        want = min(self.count, pool if allowed is None else pool * OVERSAMPLE)
        ok = set(allowed.tolist()) if allowed is not None else None
        while True:
            found = [int(key) for key in self.hnsw.search(q, want).keys]
            if ok is not None:
                found = [i for i in found if i in ok]
            if len(found) >= min(pool, len(ok) if ok is not None else pool) or want >= self.count:
                break
            want = min(self.count, want * 4)
        return self._rerank(q, found, k)

    def _rerank(self, q: np.ndarray, keys: list[int], k: int) -> list[int]:
        """The graph's candidates ordered by their exact cosine with the query."""
        if not keys:
            return []
        vectors = np.stack(self.hnsw.get(np.asarray(keys, dtype=np.int64), dtype="f32"))
        return [keys[i] for i in top_k(vectors @ q, k)]
