"""Embedding texts through the bus (`embed.text@1.0`, spec §2): the RAG worker never
imports a model, it asks whichever node serves the corpus's model."""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from hearthnet.errors import HearthNetError

EMBED_BATCH = 32  # texts per embed.text call: a progress frame each, well inside its deadline
EMBED_MAX_CHARS = 8192  # spec §2.2
EMBED_TIMEOUT_SECONDS = 120.0
# What the broker or a provider answers when nobody can embed with this model.
_NO_PROVIDER = ("not_found", "not_implemented", "partition")


class Bus(Protocol):
    async def call(self, cap: str, version: str, body: Any, *, caller: str = "", trace: str = "",
                   timeout: float | None = None, local_only: bool = False,
                   node: str | None = None) -> dict[str, Any]: ...


def no_provider(model: str, why: str) -> HearthNetError:
    return HearthNetError(
        "partition", f"no node can embed with {model!r} ({why}); run an embedding worker: set "
                     f"[embedding] model = \"{model}\" in config.toml (pip install 'hearthnet[knowledge]') "
                     "on this node, or reach a node that serves it")


async def embed(bus: Bus, model: str, texts: list[str], *, caller: str = "", trace: str = "") -> np.ndarray:
    """Unit vectors (len(texts) x dim) for one batch of at most 256 texts."""
    body = {"params": {"model": model},
            "input": {"texts": [t[:EMBED_MAX_CHARS] for t in texts], "normalize": True}}
    try:
        out = await bus.call("embed.text", "1.0", body, caller=caller, trace=trace,
                             timeout=EMBED_TIMEOUT_SECONDS)
    except HearthNetError as exc:
        if exc.code in _NO_PROVIDER:
            raise no_provider(model, exc.message or exc.code) from None
        raise
    return _vectors(out, len(texts), model)


def _vectors(out: Any, n: int, model: str) -> np.ndarray:
    """The reply's embeddings, checked: n rows, one width, finite numbers."""
    try:
        rows = out["output"]["embeddings"]
        matrix = np.asarray(rows, dtype=np.float32)
    except (KeyError, TypeError, ValueError):
        raise HearthNetError("internal_error", f"embed.text ({model}) answered without usable embeddings") from None
    if matrix.ndim != 2 or matrix.shape[0] != n or matrix.shape[1] == 0 or not np.isfinite(matrix).all():
        raise HearthNetError("internal_error", f"embed.text ({model}) answered {matrix.shape} for {n} texts")
    return matrix
