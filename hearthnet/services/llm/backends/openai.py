"""Any OpenAI-compatible server: llama.cpp's `llama-server` or `python -m
llama_cpp.server`, LM Studio, vLLM, LocalAI, Ollama's /v1 ... (config names `openai`
and `lmstudio`).

- `url` is normalised to the API base ending in `/v1`: `http://127.0.0.1:8080`,
  `http://127.0.0.1:8080/v1` and `http://127.0.0.1:8080/v1/chat/completions` all work.
- The backend always streams from the server (SSE `data: {...}` lines ending with
  `data: [DONE]`), also for a non-stream capability call: one code path, and closing the
  response is what stops the server's generation on cancel.
- Usage: `stream_options.include_usage` is requested; servers that reject it get it
  dropped (remembered); servers that ignore it (llama-cpp-python's server) leave the
  counts to the chars/3.5 approximation (`Usage.exact` False).
- The API key is read from the environment variable named by `api_key_env` on every
  call; it is never stored or logged.
- Errors: HTTP 5xx -> internal_error, 429 -> rate_limited (retry_after_ms from
  Retry-After), 400/413/422 -> bad_request, connection refused -> internal_error
  "backend unreachable at URL".
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Sequence

import aiohttp

from hearthnet.errors import HearthNetError
from hearthnet.services.llm.backends._http import (
    HttpBackend,
    as_float,
    cancel_watcher,
    error_for_status,
    raise_for_status,
    strip_url,
)
from hearthnet.services.llm.backends.base import CancelEvent, Token, Usage, is_cancelled
from hearthnet.services.llm.tokenizers import count_tokens_approx

LMSTUDIO_DEFAULT_URL = "http://127.0.0.1:1234/v1"

_FINISH = {"length": "max_tokens", "stop": "end", "eos": "end", "content_filter": "end"}


def normalise_base_url(url: str) -> str:
    """Return the API base, ending in /v1 unless the URL names another base path."""
    if not url or "://" not in url:
        raise ValueError(f"openai backend needs an http(s) url, got {url!r}")
    base = strip_url(url, ("/chat/completions", "/completions", "/models"))
    scheme, rest = base.split("://", 1)
    if "/" not in rest:  # bare host:port
        base += "/v1"
    return base


async def sse_data(resp: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The `data` payloads of a Server-Sent Events body, one per event."""
    data: list[str] = []
    async for raw in resp.content:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


class OpenAiBackend(HttpBackend):
    def __init__(
        self,
        url: str,
        model: str | None,
        *,
        models: Sequence[str] | None = None,
        api_key_env: str | None = None,
        ctx: int | None = None,
        max_concurrent: int | None = None,
        kind: str = "openai",
    ) -> None:
        super().__init__(
            base_url=normalise_base_url(url),
            model=model,
            models=models,
            api_key_env=api_key_env,
            ctx=ctx,
            max_concurrent=max_concurrent,
            kind=kind,
        )
        self._stream_usage = True

    async def warm(self, model: str | None = None) -> None:
        await self._probe(f"{self.base_url}/models")

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
        payload: dict[str, Any] = {
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages]
        }
        prompt_text = "\n".join(m["content"] for m in messages)
        return self._stream("chat/completions", model, payload, prompt_text, max_tokens,
                            temperature, top_p, stop, seed, cancel)

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
        return self._stream("completions", model, {"prompt": prompt}, prompt, max_tokens,
                            temperature, top_p, stop, seed, cancel)

    async def _open(self, endpoint: str, payload: dict[str, Any]) -> aiohttp.ClientResponse:
        url = f"{self.base_url}/{endpoint}"
        if self._stream_usage:
            payload = {**payload, "stream_options": {"include_usage": True}}
        resp = await self._post(url, payload)
        if resp.status in (400, 422) and "stream_options" in payload:
            try:
                body = await resp.text(errors="replace")
            except (aiohttp.ClientError, asyncio.TimeoutError):
                body = ""
            finally:
                resp.release()
            if "stream_options" not in body and "include_usage" not in body:
                raise error_for_status(resp.status, body, resp.headers,
                                       f"{self.name} backend at {self.base_url}", resp.reason or "")
            self._stream_usage = False  # this server rejects the field: stop sending it
            payload = {k: v for k, v in payload.items() if k != "stream_options"}
            resp = await self._post(url, payload)
        return resp

    async def _stream(
        self,
        endpoint: str,
        model: str,
        payload: dict[str, Any],
        prompt_text: str,
        max_tokens: int,
        temperature: float,
        top_p: float,
        stop: Sequence[str] | None,
        seed: int | None,
        cancel: CancelEvent | None,
    ) -> AsyncIterator[Token]:
        self._check_model(model)
        payload = {
            **payload,
            "model": model,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "stream": True,
        }
        if stop:
            payload["stop"] = list(stop)
        if seed is not None:
            payload["seed"] = seed
        chat = endpoint == "chat/completions"
        resp = await self._open(endpoint, payload)
        clean = False
        try:
            await raise_for_status(resp, f"{self.name} backend at {self.base_url}")
            out: list[str] = []
            usage: dict[str, Any] | None = None
            finish: str | None = None
            done = False
            cancelled = False
            async with cancel_watcher(cancel, resp):
                try:
                    async for data in sse_data(resp):
                        if data.strip() == "[DONE]":
                            done = True
                            break
                        chunk = _parse_chunk(data)
                        if isinstance(chunk.get("usage"), dict):
                            usage = chunk["usage"]
                        choices = chunk.get("choices") or []
                        if choices and isinstance(choices[0], dict):
                            c = choices[0]
                            if chat:
                                delta = c.get("delta") or c.get("message") or {}
                                text = delta.get("content") if isinstance(delta, dict) else None
                            else:
                                text = c.get("text")
                            if c.get("finish_reason"):
                                finish = str(c["finish_reason"])
                            if isinstance(text, str) and text:
                                out.append(text)
                                lp = _logprob(c)
                                yield Token(text=text, logprob=lp)
                        if is_cancelled(cancel):
                            cancelled = True
                            break
                except (aiohttp.ClientError, ConnectionError) as exc:
                    if not is_cancelled(cancel):
                        self._last_error = f"stream broke: {exc}"
                        raise HearthNetError(
                            "internal_error",
                            f"{self.name} backend at {self.base_url} dropped the stream: {exc}",
                        ) from exc
                    cancelled = True
            if is_cancelled(cancel):
                cancelled = True
            if not (done or finish or cancelled):
                raise HearthNetError(
                    "internal_error",
                    f"{self.name} backend at {self.base_url} ended the stream without finishing",
                )
            text_out = "".join(out)
            if usage and isinstance(usage.get("completion_tokens"), int):
                result = Usage(
                    tokens_in=int(usage.get("prompt_tokens") or 0),
                    tokens_out=int(usage["completion_tokens"]),
                    stop_reason="cancelled" if cancelled else _FINISH.get(finish or "", "end"),
                )
            else:
                result = Usage(
                    tokens_in=count_tokens_approx(prompt_text),
                    tokens_out=count_tokens_approx(text_out),
                    stop_reason="cancelled" if cancelled else _FINISH.get(finish or "", "end"),
                    exact=False,
                )
            clean = done and not cancelled
            self._served += 1
            yield Token(text="", stop=True, usage=result)
        finally:
            if clean:
                resp.release()  # keep-alive connection goes back to the pool
            else:
                resp.close()  # drop the connection: the server stops generating


def _parse_chunk(data: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise HearthNetError("internal_error", f"backend sent a malformed event: {data[:200]!r}") from exc
    if not isinstance(chunk, dict):
        raise HearthNetError("internal_error", f"backend sent a malformed event: {data[:200]!r}")
    if chunk.get("error"):
        err = chunk["error"]
        msg = err.get("message", err) if isinstance(err, dict) else err
        raise HearthNetError("internal_error", f"backend error: {msg}")
    return chunk


def _logprob(choice: dict[str, Any]) -> float | None:
    lp = choice.get("logprobs")
    if isinstance(lp, dict):
        content = lp.get("content")
        if isinstance(content, list) and content and isinstance(content[0], dict):
            return as_float(content[0].get("logprob"))
        tl = lp.get("token_logprobs")
        if isinstance(tl, list) and tl:
            return as_float(tl[0])
    return None
