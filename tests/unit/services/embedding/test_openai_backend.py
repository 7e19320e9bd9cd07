"""The `openai` embedding backend against a real `python -m llama_cpp.server --embedding
true` on the tiny GGUF (written with mean pooling, so the server answers one vector per
text), and its refusals of answers it cannot use (a small aiohttp stand-in)."""
from __future__ import annotations

import asyncio
import socket
from typing import Any, Iterator

import numpy as np
import pytest
from aiohttp import web

from hearthnet.bus.service import Request
from hearthnet.errors import HearthNetError
from hearthnet.services.embedding.openai import OpenAiEmbeddingBackend
from hearthnet.services.embedding.service import EmbeddingService
from hearthnet.testing.tiny_gguf import write_tiny_llama_gguf
from hearthnet.testing.llama_server import LlamaServer, launch_llama_server

TEXTS = ["the first text", "a second, longer text about water and shelters", "", "x"]
POOLING_MEAN = 1


@pytest.fixture(scope="module")
def embedding_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    root = tmp_path_factory.mktemp("embed-server")
    model = write_tiny_llama_gguf(root / "tiny-embed.gguf", pooling_type=POOLING_MEAN)
    with launch_llama_server(model, root / "server.log", "--embedding", "true") as server:
        yield server


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def embed(backend: OpenAiEmbeddingBackend, texts: list[str], **kw: Any) -> np.ndarray:
    try:
        return await backend.embed(texts, **kw)
    finally:
        await backend.close()


def test_vectors_from_llama_cpp_server(embedding_server):
    backend = OpenAiEmbeddingBackend(embedding_server.url, "tiny")
    assert backend.base_url.endswith("/v1") and not backend.requires_internet
    batch = run(embed(backend, TEXTS))
    assert batch.shape == (len(TEXTS), 64) and backend.dim == 64  # the tiny model's hidden size
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    # order: each text alone gives the row it got in the batch
    alone = np.stack([run(embed(backend, [t]))[0] for t in TEXTS])
    assert np.allclose(alone, batch, atol=1e-4)
    raw = run(embed(backend, TEXTS[:2], normalize=False))
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)


def test_embed_text_through_the_service(embedding_server):
    async def go() -> dict[str, Any]:
        svc = EmbeddingService([OpenAiEmbeddingBackend(embedding_server.url + "/v1/embeddings", "tiny")],
                               batch_size=3)
        await svc.start()  # warm() learns the dimension before the descriptor is built
        try:
            assert svc.capabilities()[0].params["dim"] == 64
            return await svc.handle(Request("embed.text", "1.0",
                                            {"params": {"model": "tiny"}, "input": {"texts": TEXTS}}))
        finally:
            await svc.stop()

    out = run(go())
    vecs = np.asarray(out["output"]["embeddings"])
    assert out["output"]["dim"] == 64 and vecs.shape == (4, 64)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


# ---- answers the backend must refuse -------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def with_fake_server(answer: Any, status: int = 200, texts: list[str] | None = None) -> np.ndarray:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(answer, status=status)

    app = web.Application()
    app.router.add_post("/v1/embeddings", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        return await embed(OpenAiEmbeddingBackend(f"http://127.0.0.1:{port}", "m"), texts or ["a", "b"])
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("answer, status, code, words", [
    ({"data": [{"index": 0, "embedding": [[1.0, 2.0], [3.0, 4.0]]},
               {"index": 1, "embedding": [[1.0, 2.0]]}]}, 200, "internal_error", "--pooling mean"),
    ({"data": [{"index": 0, "embedding": [1.0, 2.0]}]}, 200, "internal_error", "expected 2 embeddings"),
    ({"data": [{"index": 0, "embedding": [1.0, 2.0]}, {"index": 0, "embedding": [1.0, 2.0]}]}, 200,
     "internal_error", "no usable index"),
    ({"data": [{"index": 0, "embedding": [1.0, 2.0]}, {"index": 1, "embedding": [1.0]}]}, 200,
     "internal_error", "one length"),
    ({"data": [{"index": 0, "embedding": ["a", 2.0]}, {"index": 1, "embedding": [1.0, 2.0]}]}, 200,
     "internal_error", "numbers"),
    ({"error": {"message": "model m not found"}}, 500, "internal_error", "model m not found"),
    ({"error": "slow down"}, 429, "rate_limited", "slow down"),
])
def test_unusable_answers_are_contract_errors(answer, status, code, words):
    with pytest.raises(HearthNetError) as err:
        run(with_fake_server(answer, status))
    assert err.value.code == code and words in err.value.message


def test_answers_out_of_order_are_put_back_in_order():
    answer = {"data": [{"index": 1, "embedding": [0.0, 2.0]}, {"index": 0, "embedding": [3.0, 0.0]}]}
    vecs = run(with_fake_server(answer))
    assert vecs.tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_unreachable_server_is_internal_error():
    backend = OpenAiEmbeddingBackend(f"http://127.0.0.1:{_free_port()}/v1", "m")
    with pytest.raises(HearthNetError) as err:
        run(embed(backend, ["a"]))
    assert err.value.code == "internal_error" and "unreachable" in err.value.message
    run(backend.warm())  # a server not up yet does not fail the worker's start
    assert "unreachable" in backend.health()["last_error"]
