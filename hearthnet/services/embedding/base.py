"""What every embedding backend offers the `embedding` service (svc-llm-embed-rag §2).

A backend turns texts into vectors of one model. It does not validate (the service does),
does not batch across requests (the service's batcher does) and does not normalise unless
asked: the service normalises per request.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

# The contract's bound on one text (CONTRACT §4.6): longer texts are refused, not cut.
MAX_INPUT_CHARS = 8192


@runtime_checkable
class EmbeddingBackend(Protocol):
    name: str  # "minilm" | "openai"
    model: str  # the advertised model name; `params.model` must equal it
    dim: int | None  # None until an HTTP backend has answered once
    max_input: int  # max chars per text this backend takes (<= MAX_INPUT_CHARS)
    window_tokens: int | None  # tokens the model reads per text; the rest is dropped
    requires_internet: bool

    async def embed(self, texts: Sequence[str], *, normalize: bool = True) -> np.ndarray:
        """One float32 row per text, in input order."""
        ...

    async def warm(self) -> None: ...

    async def close(self) -> None: ...

    def health(self) -> dict[str, Any]: ...


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (as torch.nn.functional.normalize: a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
