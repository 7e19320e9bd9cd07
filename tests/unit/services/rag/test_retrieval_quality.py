"""Retrieval quality with the real default model (all-MiniLM-L6-v2, the embedding
service's backend behind the embed.text call shape): recall@5 on a labelled set of 24
questions over 40 passages (quality_data.py), for hybrid and pure vector retrieval.

Measured 2026-12-01 (see README "Knowledge (RAG)"): recall@5 hybrid 0.958 (23/24),
vector 1.000; recall@1 hybrid 0.875, vector 0.917. These questions are paraphrases, the
case where keywords help least; the floors leave room for a model or chunker change, not
for a broken pipeline (a random ranking scores ~0.12)."""
from __future__ import annotations

from typing import Any

import pytest

from tests.unit.services.rag.conftest import FakeBus, Harness
from tests.unit.services.rag.quality_data import DOCUMENTS, QUESTIONS, markdown

minilm = pytest.importorskip("hearthnet.services.embedding.minilm")

MODEL = "all-MiniLM-L6-v2"
FLOOR = {"hybrid": 0.875, "vector": 0.9}  # recall@5 (21/24, 22/24)


class MiniLmBus(FakeBus):
    """embed.text answered by the embedding service's MiniLM backend in this process."""

    def __init__(self) -> None:
        super().__init__()
        self.backend = minilm.MiniLmBackend()

    async def call(self, cap: str, version: str, body: Any, **kw: Any) -> dict[str, Any]:
        if cap != "embed.text":
            return await super().call(cap, version, body, **kw)
        assert body["params"]["model"] == MODEL
        vectors = await self.backend.embed(body["input"]["texts"], normalize=True)
        return {"output": {"embeddings": vectors.tolist(), "dim": int(vectors.shape[1])},
                "meta": {"model": MODEL, "ms": 0}}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if minilm.unavailable_reason() is not None:
        pytest.skip(minilm.unavailable_reason())
    h = Harness(tmp_path_factory.mktemp("quality"), embedding_model=MODEL)
    h.bus = MiniLmBus()
    h.svc.bus = h.svc.pipeline.bus = h.bus
    for title, sections in DOCUMENTS.items():
        cid = h.add(markdown(title, sections).encode(), f"{title}.md", "text/markdown")
        h.ingest("preparedness", cid, language="en")
    yield h
    h.close()


def _recall(h: Harness, mode: str, k: int = 5) -> tuple[float, float, list[str]]:
    found, first, misses = 0, 0, []
    for question, label in QUESTIONS:
        chunks = h.query("preparedness", question, k=k, mode=mode)["output"]["chunks"]
        sections = [c["metadata"]["heading_path"][-1] for c in chunks]
        found += label in sections
        first += bool(sections) and sections[0] == label
        if label not in sections:
            misses.append(f"{question!r} -> {sections[:3]}")
    return found / len(QUESTIONS), first / len(QUESTIONS), misses


@pytest.mark.parametrize("mode", ["hybrid", "vector"])
def test_recall_at_5(corpus, mode):
    recall5, recall1, misses = _recall(corpus, mode)
    print(f"{mode}: recall@5 {recall5:.3f} recall@1 {recall1:.3f} misses {misses}")
    assert recall5 >= FLOOR[mode], misses


def test_one_passage_is_one_chunk_and_answers_score_above_unrelated_text(corpus):
    info = corpus.call("rag.list_corpora", {}, {})["output"]["corpora"][0]
    assert info["chunks"] == sum(len(s) + 1 for s in DOCUMENTS.values())  # sections + each title line
    answer = corpus.query("preparedness", "How long do I need to boil tap water?", k=1)["output"]["chunks"][0]
    nonsense = corpus.query("preparedness", "quarterly revenue of the semiconductor division", k=1)["output"]["chunks"][0]
    assert answer["score"] > 0.5 > nonsense["score"]
