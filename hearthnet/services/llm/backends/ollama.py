"""Ollama's native API: `POST /api/chat` and `POST /api/generate`, streamed as NDJSON.

Each line is a JSON object; text arrives in `message.content` (chat) or `response`
(generate); the last line has `"done": true` with `done_reason` ("stop" | "length"),
`prompt_eval_count` and `eval_count` (exact token counts). `{"error": "..."}` lines and
HTTP errors map onto contract codes like the OpenAI-compatible backend. `url` defaults
to http://127.0.0.1:11434 (a trailing `/api` or `/v1` is stripped); `model` or `models`
must name the models to advertise (they are not discovered from /api/tags).
"""
from __future__ import annotations

import json
from typing import Any, AsyncIterator, Sequence

import aiohttp

from hearthnet.errors import HearthNetError
from hearthnet.services.llm.backends._http import (
    HttpBackend,
    cancel_watcher,
    raise_for_status,
    strip_url,
)
from hearthnet.services.llm.backends.base import CancelEvent, Token, Usage, is_cancelled
from hearthnet.services.llm.tokenizers import count_tokens_approx

OLLAMA_DEFAULT_URL = "http://127.0.0.1:11434"


class OllamaBackend(HttpBackend):
    def __init__(
        self,
        url: str | None,
        model: str | None,
        *,
        models: Sequence[str] | None = None,
        api_key_env: str | None = None,
        ctx: int | None = None,
        max_concurrent: int | None = None,
    ) -> None:
        base = strip_url(url or OLLAMA_DEFAULT_URL, ("/api/chat", "/api/generate", "/api", "/v1"))
        if "://" not in base:
            raise ValueError(f"ollama backend needs an http(s) url, got {url!r}")
        super().__init__(
            base_url=base,
            model=model,
            models=models,
            api_key_env=api_key_env,
            ctx=ctx,
            max_concurrent=max_concurrent,
            kind="ollama",
        )
        self._num_ctx = int(ctx) if ctx else None

    async def warm(self, model: str | None = None) -> None:
        await self._probe(f"{self.base_url}/api/tags")

    def _options(self, max_tokens: int, temperature: float, top_p: float,
                 stop: Sequence[str] | None, seed: int | None) -> dict[str, Any]:
        opts: dict[str, Any] = {"num_predict": max_tokens, "temperature": temperature, "top_p": top_p}
        if stop:
            opts["stop"] = list(stop)
        if seed is not None:
            opts["seed"] = seed
        if self._num_ctx:
            opts["num_ctx"] = self._num_ctx
        return opts

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
        payload = {
            "model": model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "stream": True,
            "options": self._options(max_tokens, temperature, top_p, stop, seed),
        }
        prompt_text = "\n".join(m["content"] for m in messages)
        return self._stream("/api/chat", model, payload, prompt_text, cancel)

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
        payload = {
            "model": model,
            "prompt": prompt,
            "stream": True,
            "options": self._options(max_tokens, temperature, top_p, stop, seed),
        }
        return self._stream("/api/generate", model, payload, prompt, cancel)

    async def _stream(
        self,
        path: str,
        model: str,
        payload: dict[str, Any],
        prompt_text: str,
        cancel: CancelEvent | None,
    ) -> AsyncIterator[Token]:
        self._check_model(model)
        resp = await self._post(self.base_url + path, payload)
        clean = False
        try:
            await raise_for_status(resp, f"ollama at {self.base_url}")
            out: list[str] = []
            final: dict[str, Any] | None = None
            cancelled = False
            async with cancel_watcher(cancel, resp):
                try:
                    async for raw in resp.content:
                        line = raw.strip()
                        if not line:
                            continue
                        try:
                            doc = json.loads(line)
                        except ValueError as exc:
                            raise HearthNetError(
                                "internal_error", f"ollama sent a malformed line: {line[:200]!r}"
                            ) from exc
                        if not isinstance(doc, dict):
                            raise HearthNetError(
                                "internal_error", f"ollama sent a malformed line: {line[:200]!r}"
                            )
                        if doc.get("error"):
                            raise HearthNetError("internal_error", f"ollama error: {doc['error']}")
                        msg = doc.get("message")
                        text = msg.get("content") if isinstance(msg, dict) else doc.get("response")
                        if isinstance(text, str) and text:
                            out.append(text)
                            yield Token(text=text)
                        if doc.get("done"):
                            final = doc
                            break
                        if is_cancelled(cancel):
                            cancelled = True
                            break
                except (aiohttp.ClientError, ConnectionError) as exc:
                    if not is_cancelled(cancel):
                        self._last_error = f"stream broke: {exc}"
                        raise HearthNetError(
                            "internal_error", f"ollama at {self.base_url} dropped the stream: {exc}"
                        ) from exc
                    cancelled = True
            if final is None and not cancelled:
                if is_cancelled(cancel):
                    cancelled = True
                else:
                    raise HearthNetError(
                        "internal_error", f"ollama at {self.base_url} ended the stream early"
                    )
            text_out = "".join(out)
            if cancelled:
                reason = "cancelled"
            else:
                reason = "max_tokens" if (final or {}).get("done_reason") == "length" else "end"
            if final is not None and isinstance(final.get("eval_count"), int):
                usage = Usage(int(final.get("prompt_eval_count") or 0), final["eval_count"], reason)
            else:
                usage = Usage(count_tokens_approx(prompt_text), count_tokens_approx(text_out),
                              reason, exact=False)
            clean = final is not None
            self._served += 1
            yield Token(text="", stop=True, usage=usage)
        finally:
            if clean:
                resp.release()
            else:
                resp.close()
