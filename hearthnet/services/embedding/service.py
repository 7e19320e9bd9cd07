"""The `embedding` service: `embed.text@1.0` (svc-llm-embed-rag §2, CONTRACT §4.6).

Request `{"params": {"model": M}, "input": {"texts": [1..256 strings of <= 8192 chars],
"normalize": true}}` -> `{"output": {"embeddings": [[...]], "dim": D}, "meta": {"model": M,
"ms": N}}`. `params.model` is required: vectors of different models are not comparable,
so a caller always says which model it indexes with (the broker routes on it; a model
this node does not serve is `not_found`).

One descriptor for the node: `params.model` is the primary model, `params.models` the
catalogue `[{name, dim, window_tokens, backend, requires_internet}]` (the LLM service's
pattern, CONTRACT §4.1), so RAG can read a model's window from the registry.

Batching (the spec's "Phase 1.5"): each backend has one queue and one runner. A request's
texts enter the queue sorted by length; the runner takes up to `batch_size` texts from
the head of the queue — several requests' texts when several wait — and runs one backend
call (a forward pass in a thread for `minilm`). Requests that arrive while a pass runs are
merged into the next one, so nothing waits for a timer.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import psutil

from hearthnet.bus.service import Capability, Request
from hearthnet.errors import HearthNetError
from hearthnet.services.embedding.base import MAX_INPUT_CHARS, EmbeddingBackend, l2_normalize

log = logging.getLogger(__name__)

MAX_TEXTS = 256
DEFAULT_BATCH_SIZE = 32
MAX_CONCURRENT = 8
TIMEOUT_SECONDS = 15

REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["params", "input"],
    "properties": {
        "params": {"type": "object", "required": ["model"],
                   "properties": {"model": {"type": "string", "description": "a model of params.models"}}},
        "input": {
            "type": "object",
            "required": ["texts"],
            "properties": {
                "texts": {"type": "array", "minItems": 1, "maxItems": MAX_TEXTS,
                          "items": {"type": "string", "maxLength": MAX_INPUT_CHARS}},
                "normalize": {"type": "boolean", "default": True},
            },
        },
    },
}

RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["output", "meta"],
    "properties": {
        "output": {
            "type": "object",
            "required": ["embeddings", "dim"],
            "properties": {
                "embeddings": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                "dim": {"type": "integer", "minimum": 1},
            },
        },
        "meta": {
            "type": "object",
            "required": ["model", "ms"],
            "properties": {"model": {"type": "string"}, "ms": {"type": "integer", "minimum": 0}},
        },
    },
}


def _bad(message: str) -> HearthNetError:
    return HearthNetError("bad_request", message)


def validate(body: Any) -> tuple[str, list[str], bool]:
    """(model, texts, normalize) of an embed.text body, or bad_request saying what is wrong."""
    if not isinstance(body, dict):
        raise _bad('the body must be an object {"params": {"model": ...}, "input": {"texts": [...]}}')
    params, inp = body.get("params"), body.get("input")
    if not isinstance(params, dict):
        raise _bad("params must be an object with the model name: {\"model\": ...}")
    if not isinstance(inp, dict):
        raise _bad('input must be an object {"texts": [...]}')
    model = params.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("params.model is required: the name of the embedding model (vectors of "
                   "different models are not comparable)")
    texts = inp.get("texts")
    if not isinstance(texts, list):
        raise _bad("input.texts must be a list of strings")
    if not 1 <= len(texts) <= MAX_TEXTS:
        raise _bad(f"input.texts has {len(texts)} texts; send 1 to {MAX_TEXTS}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise _bad(f"input.texts[{i}] must be a string, got {type(text).__name__}")
        if len(text) > MAX_INPUT_CHARS:
            raise _bad(f"input.texts[{i}] has {len(text)} characters; at most {MAX_INPUT_CHARS}")
    normalize = inp.get("normalize", True)
    if normalize is None:
        normalize = True
    if not isinstance(normalize, bool):
        raise _bad(f"input.normalize must be true or false, got {normalize!r}")
    return model, texts, normalize


# --------------------------------------------------------------------------- batching

@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future
    out: np.ndarray | None = None
    left: int = 0

    def __post_init__(self) -> None:
        self.left = len(self.texts)


@dataclass
class Batcher:
    """One queue and one runner per backend; see the module docstring."""

    backend: EmbeddingBackend
    batch_size: int = DEFAULT_BATCH_SIZE
    pending: deque[tuple[_Job, int]] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    runner: asyncio.Task | None = None
    passes: int = 0  # backend calls made
    merged: int = 0  # backend calls that served more than one request

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Raw (not normalised) vectors of `texts`, in input order."""
        job = _Job(texts, asyncio.get_running_loop().create_future())
        self.pending.extend((job, i) for i in sorted(range(len(texts)), key=lambda i: len(texts[i])))
        self.wake.set()
        if self.runner is None or self.runner.done():
            self.runner = asyncio.create_task(self._run())
        return await job.future  # cancelled by a gone caller: the runner skips its texts

    def _take(self) -> list[tuple[_Job, int]]:
        batch: list[tuple[_Job, int]] = []
        while self.pending and len(batch) < self.batch_size:
            job, i = self.pending.popleft()
            if not job.future.done():
                batch.append((job, i))
        return batch

    async def _run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while batch := self._take():
                await self._pass(batch)

    async def _pass(self, batch: list[tuple[_Job, int]]) -> None:
        jobs = {id(job): job for job, _ in batch}
        self.passes += 1
        self.merged += len(jobs) > 1
        try:
            vectors = await self.backend.embed([job.texts[i] for job, i in batch], normalize=False)
            if vectors.ndim != 2 or vectors.shape[0] != len(batch):
                raise ValueError(f"{len(batch)} texts gave vectors of shape {vectors.shape}")
        except Exception as exc:  # noqa: BLE001 - any backend failure ends these jobs, not the runner
            error = exc if isinstance(exc, HearthNetError) else self._internal(exc)
            for job in jobs.values():
                if not job.future.done():
                    job.future.set_exception(error)
            return
        for row, (job, i) in enumerate(batch):
            if job.out is None:
                job.out = np.empty((len(job.texts), vectors.shape[1]), dtype=np.float32)
            job.out[i] = vectors[row]
            job.left -= 1
            if job.left == 0 and not job.future.done():
                job.future.set_result(job.out)

    def _internal(self, exc: BaseException) -> HearthNetError:
        log.error("embedding backend %s failed", self.backend.name, exc_info=exc)
        return HearthNetError("internal_error", f"the {self.backend.name} embedding backend failed "
                                                f"({type(exc).__name__}); see the embedding log")

    async def close(self) -> None:
        if self.runner is not None:
            self.runner.cancel()
            await asyncio.wait({self.runner})


# --------------------------------------------------------------------------- service

class EmbeddingService:
    name = "embedding"
    version = "1.0"

    def __init__(self, backends: Sequence[EmbeddingBackend], *, batch_size: int = DEFAULT_BATCH_SIZE,
                 skipped: Sequence[dict[str, str]] = ()) -> None:
        self.backends = list(backends)
        self.batch_size = max(1, batch_size)
        self.skipped = list(skipped)  # backends that could not be built: {"backend", "error"}
        self._batchers: dict[str, Batcher] = {}
        self.served = 0
        self.errors = 0

    # ------------------------------------------------------------------ catalogue
    def _entry(self, b: EmbeddingBackend) -> dict[str, Any]:
        return {"name": b.model, "dim": b.dim, "window_tokens": b.window_tokens,
                "backend": b.name, "requires_internet": bool(b.requires_internet)}

    def params(self) -> dict[str, Any]:
        models = [self._entry(b) for b in self.backends]
        primary = models[0]
        return {"model": primary["name"], "dim": primary["dim"], "window_tokens": primary["window_tokens"],
                "backend": primary["backend"],
                "requires_internet": all(m["requires_internet"] for m in models), "models": models}

    def capabilities(self) -> list[Capability]:
        if not self.backends:
            return []
        return [Capability(name="embed.text", handler=self.handle, version="1.0", stability="stable",
                           request_schema=REQUEST_SCHEMA, response_schema=RESPONSE_SCHEMA,
                           params=self.params(), max_concurrent=MAX_CONCURRENT,
                           trust_required="member", timeout_seconds=TIMEOUT_SECONDS, idempotent=True)]

    def backend_for(self, model: str) -> EmbeddingBackend:
        for b in self.backends:
            if b.model == model:
                return b
        names = ", ".join(b.model for b in self.backends) or "none"
        raise HearthNetError("not_found", f"embedding model {model!r} is not served here; this node serves: {names}")

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Load every backend now (the model once, at start), not on the first call."""
        for b in list(self.backends):
            try:
                await b.warm()
            except Exception as exc:  # noqa: BLE001 - a backend that cannot load is left out
                log.error("embedding backend %s (%s) failed to load: %s", b.name, b.model, exc)
                self.skipped.append({"backend": b.name, "error": str(exc)})
                self.backends.remove(b)
        self._batchers = {b.model: Batcher(b, self.batch_size) for b in self.backends}
        rss = psutil.Process().memory_info().rss
        for b in self.backends:
            log.info("embedding: %s ready (%s backend, dim %s); worker RSS %d MiB", b.model, b.name,
                     b.dim, rss >> 20, extra={"health": b.health()})

    async def stop(self) -> None:
        for batcher in self._batchers.values():
            await batcher.close()
        for b in self.backends:
            await b.close()

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backends": [b.health() for b in self.backends], "skipped": self.skipped,
                               "served": self.served, "errors": self.errors,
                               "passes": sum(x.passes for x in self._batchers.values()),
                               "merged_passes": sum(x.merged for x in self._batchers.values())}
        if not self.backends:
            why = "; ".join(f"{s['backend']}: {s['error']}" for s in self.skipped) or "none configured"
            out["note"] = f"embedding: no backend, embed.text unavailable ({why})"
        return out

    # ------------------------------------------------------------------ handler
    async def handle(self, request: Request) -> dict[str, Any]:
        started = time.monotonic()
        model, texts, normalize = validate(request.body)
        backend = self.backend_for(model)
        limit = min(MAX_INPUT_CHARS, backend.max_input)
        for i, text in enumerate(texts):
            if len(text) > limit:
                raise _bad(f"input.texts[{i}] has {len(text)} characters; {model} takes at most {limit}")
        try:
            vectors = await self._batchers[backend.model].embed(texts)
        except HearthNetError:
            self.errors += 1
            raise
        if normalize:
            vectors = l2_normalize(vectors)
        self.served += 1
        return {"output": {"embeddings": vectors.tolist(), "dim": int(vectors.shape[1])},
                "meta": {"model": model, "ms": int(round((time.monotonic() - started) * 1000))}}


# --------------------------------------------------------------------------- config

def build_backend(emb: Any) -> EmbeddingBackend:
    """The backend of an `[embedding]` config section (hearthnet.config.EmbeddingConfig)."""
    from hearthnet.config import embedding_model

    if emb.backend == "minilm":
        from hearthnet.services.embedding.minilm import MiniLmBackend, model_dir

        return MiniLmBackend(model_dir())
    if emb.backend == "openai":
        from hearthnet.services.embedding.openai import OpenAiEmbeddingBackend

        return OpenAiEmbeddingBackend(emb.url, embedding_model(emb), api_key_env=emb.api_key_env or None,
                                      window_tokens=emb.window_tokens or None)
    raise ValueError(f"unknown embedding backend {emb.backend!r}")


def service_from_config(cfg: Any) -> EmbeddingService:
    """The service of a node's Config; a backend that cannot be built is recorded (the
    worker then serves nothing and its health note says why)."""
    emb = cfg.embedding
    try:
        backends = [build_backend(emb)]
        skipped: list[dict[str, str]] = []
    except (ImportError, OSError, RuntimeError, ValueError) as exc:
        log.error("embedding backend %s cannot be built: %s", emb.backend, exc)
        backends, skipped = [], [{"backend": emb.backend, "error": str(exc)}]
    return EmbeddingService(backends, batch_size=emb.batch_size, skipped=skipped)
