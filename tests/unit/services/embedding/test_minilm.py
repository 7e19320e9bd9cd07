"""The numpy forward pass of all-MiniLM-L6-v2 against sentence-transformers' own vectors
(reference_minilm.json, made once with torch by scripts/make-embedding-reference), and
the token counter the RAG chunker uses."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from hearthnet.services.embedding import minilm

REFERENCE = json.loads((Path(__file__).parent / "reference_minilm.json").read_text(encoding="utf-8"))

pytestmark = pytest.mark.skipif(minilm.unavailable_reason() is not None,
                                reason=f"all-MiniLM-L6-v2: {minilm.unavailable_reason()}")


@pytest.fixture(scope="module")
def model() -> minilm.MiniLm:
    return minilm.MiniLm()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_reference_covers_truncation_german_and_empty_texts():
    texts, pieces = REFERENCE["texts"], REFERENCE["wordpieces"]
    assert REFERENCE["model"] == minilm.MODEL_NAME and REFERENCE["max_seq_length"] == minilm.WINDOW_TOKENS
    assert len(texts) >= 20 and "" in texts
    assert sum(p > minilm.WINDOW_TOKENS for p in pieces) >= 3  # truncated inputs
    assert any("ä" in t or "ß" in t for t in texts)


def test_vectors_equal_sentence_transformers(model):
    ours = model.encode(REFERENCE["texts"], batch_size=8)
    ref = np.asarray(REFERENCE["vectors"], dtype=np.float32)
    assert ours.shape == ref.shape == (len(REFERENCE["texts"]), minilm.DIM)
    cos = cosines(ours, ref)
    worst = int(cos.argmin())
    assert cos.min() >= 0.9999, (REFERENCE["texts"][worst][:80], float(cos.min()))
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_a_vector_does_not_depend_on_its_batch(model, batch_size):
    """Padding to the batch's longest text is masked out: each text alone or amid others
    of other lengths gets the same vector."""
    texts = REFERENCE["texts"]
    alone = np.stack([model.encode([t])[0] for t in texts[:6]])
    batched = model.encode(texts, batch_size=batch_size)[:6]
    assert cosines(alone, batched).min() >= 0.99999


def test_unnormalized_is_the_mean_pooled_vector(model):
    raw = model.encode(["water purification"], normalize=False)
    unit = model.encode(["water purification"])
    assert not math.isclose(float(np.linalg.norm(raw)), 1.0, abs_tol=1e-3)
    assert np.allclose(raw / np.linalg.norm(raw), unit, atol=1e-6)


def test_gelu_is_the_exact_erf_one():
    x = np.linspace(-10, 10, 4001, dtype=np.float32).reshape(-1, 1) * np.ones((1, 7), np.float32)
    exact = np.vectorize(lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))))(x.astype(np.float64))
    assert np.abs(minilm.gelu_(x.copy()) - exact).max() < 2e-6


def test_count_tokens_matches_the_models_tokenizer():
    assert [minilm.count_tokens(t) for t in REFERENCE["texts"]] == REFERENCE["wordpieces"]
    assert minilm.count_tokens_batch(REFERENCE["texts"]) == REFERENCE["wordpieces"]
    assert minilm.count_tokens("") == minilm.SPECIAL_TOKENS


def test_wordpiece_spans_cut_a_text_into_exact_windows():
    text = REFERENCE["texts"][-3]  # a long English text
    spans = minilm.wordpiece_spans(text)
    assert len(spans) == minilm.count_tokens(text) - minilm.SPECIAL_TOKENS
    window = minilm.WINDOW_TOKENS - minilm.SPECIAL_TOKENS
    piece = text[spans[0][0]:spans[window - 1][1]]
    assert minilm.count_tokens(piece) == minilm.WINDOW_TOKENS


def test_the_backend_through_the_service_in_batches(model):
    """embed.text with the minilm backend, 21 texts in passes of 8: reference vectors in
    input order."""
    import asyncio

    from hearthnet.bus.service import Request
    from hearthnet.services.embedding.service import EmbeddingService

    backend = minilm.MiniLmBackend()
    backend._model = model  # the module's loaded model

    async def go() -> dict:
        svc = EmbeddingService([backend], batch_size=8)
        await svc.start()
        try:
            return await svc.handle(Request("embed.text", "1.0", {
                "params": {"model": "all-MiniLM-L6-v2"}, "input": {"texts": REFERENCE["texts"]}}))
        finally:
            await svc.stop()

    out = asyncio.run(go())
    vecs = np.asarray(out["output"]["embeddings"], dtype=np.float32)
    assert out["output"]["dim"] == minilm.DIM and backend.health()["texts_served"] == len(REFERENCE["texts"])
    assert cosines(vecs, np.asarray(REFERENCE["vectors"], dtype=np.float32)).min() >= 0.9999
