"""The `openai` embedding backend: `POST {base}/embeddings` of any OpenAI-compatible
server (llama.cpp's llama-server or `python -m llama_cpp.server --embedding true`,
Ollama's /v1, LM Studio, vLLM). Session, API key and error mapping are the LLM
backends' (`llm/backends/_http.py`); the URL is normalised the same way (`.../v1`).

The server must pool (one vector per text): a model served without pooling answers one
vector per token, which is refused with a hint (llama-server `--pooling mean`, or a GGUF
whose `<arch>.pooling_type` is set). `dim` is learnt from the first answer (warm() asks
once) and must not change afterwards.
"""
from __future__ import annotations

import asyncio
from typing import Any, Sequence

import aiohttp
import numpy as np

from hearthnet.errors import HearthNetError
from hearthnet.services.embedding.base import MAX_INPUT_CHARS, l2_normalize
from hearthnet.services.llm.backends._http import HttpClient, raise_for_status, requires_internet
from hearthnet.services.llm.backends.openai import normalise_base_url


class OpenAiEmbeddingBackend(HttpClient):
    max_input = MAX_INPUT_CHARS

    def __init__(self, url: str, model: str, *, api_key_env: str | None = None,
                 window_tokens: int | None = None) -> None:
        if not model:
            raise ValueError("the openai embedding backend needs `model` (the server's model name)")
        base = normalise_base_url(url.rstrip("/").removesuffix("/embeddings"))
        super().__init__(base_url=base, api_key_env=api_key_env, kind="openai")
        self.model = model
        self.dim: int | None = None
        self.window_tokens = window_tokens or None
        self.requires_internet = requires_internet(base)

    def _what(self) -> str:
        return f"embedding backend at {self.base_url}"

    async def warm(self) -> None:
        """Learn `dim` with one tiny request. A server that is not up yet is noted for
        health() and does not stop the worker."""
        try:
            await self.embed(["dimension probe"])
            self._last_error = None
        except HearthNetError as exc:
            self._last_error = exc.message

    async def embed(self, texts: Sequence[str], *, normalize: bool = True) -> np.ndarray:
        resp = await self._post(f"{self.base_url}/embeddings", {"model": self.model, "input": list(texts)})
        try:
            await raise_for_status(resp, self._what())
            try:
                doc = await resp.json(content_type=None)
            except (ValueError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise self._bad(f"its answer is not JSON ({exc})") from None
        finally:
            resp.release()
        vectors = self._vectors(doc, len(texts))
        self._served += len(texts)
        return l2_normalize(vectors) if normalize else vectors

    def _vectors(self, doc: Any, count: int) -> np.ndarray:
        data = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(data, list) or len(data) != count:
            raise self._bad(f"expected {count} embeddings in `data`, got "
                            f"{len(data) if isinstance(data, list) else type(data).__name__}")
        rows: list[Any] = [None] * count
        for pos, item in enumerate(data):
            index = item.get("index", pos) if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < count or rows[index] is not None:
                raise self._bad(f"data[{pos}] has no usable index")
            rows[index] = item.get("embedding")
        if rows and isinstance(rows[0], list) and rows[0] and isinstance(rows[0][0], list):
            raise self._bad("it sent one vector per token: the model is served without pooling "
                            "(llama-server: --pooling mean)")
        try:
            vectors = np.asarray(rows, dtype=np.float32)
        except (TypeError, ValueError):
            raise self._bad("the embeddings are not lists of numbers of one length") from None
        if vectors.ndim != 2 or vectors.shape[1] == 0 or not np.isfinite(vectors).all():
            raise self._bad("the embeddings are not finite vectors of one length")
        if self.dim is None:
            self.dim = int(vectors.shape[1])
        elif vectors.shape[1] != self.dim:
            raise self._bad(f"dimension changed from {self.dim} to {vectors.shape[1]}")
        return vectors

    def _bad(self, why: str) -> HearthNetError:
        self._last_error = why
        return HearthNetError("internal_error", f"{self._what()}: {why}")

    def health(self) -> dict[str, Any]:
        return {"backend": self.name, "url": self.base_url, "model": self.model, "dim": self.dim,
                "texts_served": self._served, "last_error": self._last_error}
