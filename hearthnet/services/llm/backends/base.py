"""What every LLM backend provides to `LlmService` (svc-llm-embed-rag §1.3).

A backend serves one or more models. `chat()` and `complete()` are async generators of
`Token`s. The stream always ends with exactly one token whose `stop` is True; that last
token carries the `Usage` (tokens in/out and why the generation stopped) and may carry
text of its own (held-back text flushed at the end).

Cancellation, two ways, both honoured within 200 ms:
- the consumer closes the iterator (`aclose()`) or cancels the task awaiting it: the
  backend stops its work in `finally` (no final token is produced then);
- the caller sets the `cancel` event (an `asyncio.Event` or a `threading.Event`): the
  backend stops and ends the stream normally with `stop_reason == "cancelled"`.

Errors are raised as `HearthNetError` with a contract code (`bad_request`,
`internal_error`, `rate_limited`, ...); a backend never leaks another exception type
out of `chat()`/`complete()`.
"""
from __future__ import annotations

import abc
import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Sequence, Union

CancelEvent = Union[asyncio.Event, threading.Event]

STOP_REASONS = ("end", "max_tokens", "stop_sequence", "cancelled")


@dataclass(frozen=True)
class BackendModel:
    """One model a backend serves, as advertised in the capability catalogue."""

    name: str
    quant: str = "unknown"  # "q4_k_m" | "q8_0" | "f16" | "f32" | "api" | "unknown" ...
    ctx_max: int = 4096
    modalities: tuple[str, ...] = ("text",)
    requires_internet: bool = False


@dataclass(frozen=True)
class Usage:
    tokens_in: int
    tokens_out: int
    stop_reason: str  # one of STOP_REASONS
    exact: bool = True  # False when counted by the chars/3.5 approximation


@dataclass(frozen=True)
class Token:
    text: str
    logprob: float | None = None
    stop: bool = False
    usage: Usage | None = None  # set on the last token (stop=True), None otherwise


@dataclass(frozen=True)
class ChatResult:
    text: str
    tokens_in: int
    tokens_out: int
    stop_reason: str
    ms: int


def is_cancelled(cancel: CancelEvent | None) -> bool:
    # Both event types expose a plain flag; reading it from any thread is safe.
    return cancel is not None and cancel.is_set()


async def collect(tokens: AsyncIterator[Token]) -> ChatResult:
    """Drain a token stream into one ChatResult (closes the iterator in any case)."""
    started = time.monotonic()
    parts: list[str] = []
    usage: Usage | None = None
    try:
        async for tok in tokens:
            parts.append(tok.text)
            if tok.stop:
                usage = tok.usage
                break
    finally:
        aclose = getattr(tokens, "aclose", None)
        if aclose is not None:
            await aclose()
    if usage is None:
        usage = Usage(0, 0, "end", exact=False)
    return ChatResult(
        text="".join(parts),
        tokens_in=usage.tokens_in,
        tokens_out=usage.tokens_out,
        stop_reason=usage.stop_reason,
        ms=int(round((time.monotonic() - started) * 1000)),
    )


class LlmBackend(abc.ABC):
    """An LLM engine reachable in-process or over HTTP."""

    #: backend kind as written in config: "llama_cpp", "openai", "lmstudio", "ollama"
    name: str = "base"

    @property
    @abc.abstractmethod
    def models(self) -> list[BackendModel]:
        """The models this backend serves; the first one is its default."""

    async def warm(self, model: str | None = None) -> None:
        """Load / connect ahead of the first request (default: nothing to do)."""

    async def close(self) -> None:
        """Stop in-flight generations and release the engine or HTTP session."""

    @abc.abstractmethod
    def chat(
        self,
        *,
        model: str,
        messages: Sequence[dict[str, str]],
        max_tokens: int = 1024,
        temperature: float = 0.7,
        top_p: float = 0.95,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
        cancel: CancelEvent | None = None,
    ) -> AsyncIterator[Token]:
        """Generate an assistant reply to `messages` ({"role","content"} dicts)."""

    @abc.abstractmethod
    def complete(
        self,
        *,
        model: str,
        prompt: str,
        max_tokens: int = 256,
        temperature: float = 0.7,
        top_p: float = 0.95,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
        cancel: CancelEvent | None = None,
    ) -> AsyncIterator[Token]:
        """Continue `prompt` as raw text."""

    def max_concurrent(self, model: str | None = None) -> int:
        return 1

    def count_tokens(self, model: str, text: str) -> int:
        from hearthnet.services.llm.tokenizers import count_tokens_approx

        return count_tokens_approx(text)

    def health(self) -> dict[str, Any]:
        return {"backend": self.name, "models": [m.name for m in self.models]}

    def serves(self, model: str) -> bool:
        return any(m.name == model for m in self.models)
