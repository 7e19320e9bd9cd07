"""Ranking a corpus's chunks for a query: the one retrieval function `rag.query` uses and
`rag.ask` is meant to reuse (`Corpora.get(name)` + `retrieve(...)`).

Modes (`input.mode` of rag.query):
* `hybrid` (default): FTS5 BM25 over the chunk text (its heading path and document title
  weigh less) and the vector search each rank up to CANDIDATES chunks; reciprocal rank
  fusion (score = sum of 1 / (RRF_K + rank)) orders the union;
* `vector`: the vector search alone.

The `score` of every hit is the cosine similarity of the query vector and the chunk's
stored vector (1 = same direction; with MiniLM, answers typically score 0.4-0.8 and
unrelated text under 0.2), whatever the mode ranked it by, so a threshold on it means
the same thing in both modes. `ranks` says where each list placed it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hearthnet.services.rag.index import VectorIndex, unit
from hearthnet.services.rag.store import CorpusStore

MODES = ("hybrid", "vector")
RRF_K = 60
CANDIDATES = 50  # per list, at least 4 k


@dataclass
class Hit:
    id: int
    score: float  # cosine similarity of query and chunk
    row: dict[str, Any]
    ranks: dict[str, int | None] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        r = self.row
        return {"doc_cid": r["doc_cid"], "doc_title": r["doc_title"], "page": r["page"],
                "chunk_id": r["chunk_id"], "chunk_index": r["chunk_index"],
                "char_start": r["char_start"], "char_end": r["char_end"],
                "heading_path": r["heading_path"], "language": r["language"],
                "source_type": r["source_type"], "tokens": r["tokens"], **_extra(r["doc_metadata"])}


def _extra(doc_metadata: dict[str, Any]) -> dict[str, Any]:
    """The document's own metadata (author, year, ...) without overriding ours."""
    return {k: v for k, v in doc_metadata.items() if k not in _OURS}


_OURS = {"doc_cid", "doc_title", "page", "chunk_id", "chunk_index", "char_start", "char_end",
         "heading_path", "language", "source_type", "tokens"}


def retrieve(store: CorpusStore, index: VectorIndex, query_vector: np.ndarray, query_text: str, *,
             k: int, mode: str = "hybrid", where: tuple[str, list[Any]] | None = None) -> list[Hit]:
    """The k best chunks, best first (blocking: call it in a thread)."""
    q = unit(np.asarray(query_vector, dtype=np.float32))
    n = max(CANDIDATES, 4 * k)
    allowed = store.filtered_ids(where) if where is not None else None
    vec_ids = index.search(q, n if mode == "hybrid" else k, allowed)
    vec_rank = {cid: r for r, cid in enumerate(vec_ids, start=1)}
    kw_rank: dict[int, int] = {}
    if mode == "hybrid":
        kw_rank = {cid: r for r, cid in enumerate(store.keyword(query_text, n, where), start=1)}
        fused = {cid: sum(1.0 / (RRF_K + ranks[cid]) for ranks in (vec_rank, kw_rank) if cid in ranks)
                 for cid in {*vec_rank, *kw_rank}}
        order = sorted(fused, key=lambda cid: (-fused[cid], cid))[:k]
    else:
        order = vec_ids[:k]
    rows = store.rows(order)
    hits = []
    for cid in order:
        row = rows.get(cid)
        if row is None:  # vanished between the two reads (a reindex): skip it
            continue
        score = float(np.dot(unit(row["vector"]), q))
        hits.append(Hit(cid, round(score, 6), row, {"vector": vec_rank.get(cid), "keyword": kw_rank.get(cid)}))
    return hits
