"""The `llm` service: `llm.chat@1.0` and `llm.complete@1.0` over configured backends
(svc-llm-embed-rag §1; CONTRACT §4.1).

One descriptor per capability for the whole node. `params.model` is the primary model
(the first model of the first working backend); `params.models` is the catalogue of every
model any backend serves, each `{"name", "quant", "ctx", "backend", "modalities",
"requires_internet"}`. A request names a model in `params.model` (default: the primary)
and is dispatched to the backend that serves it. The top-level `params` also repeat the
primary model's `quant`, `ctx`, `backend`, `modalities`, and `requires_internet` is true
only when every catalogued model needs the internet (so an offline node does not drop a
descriptor that still has local models).

Outage-aware (issue 10; README "Emergency detector"): with a `mode_bus`, the service
follows this node's emergency mode (`emergency.watch`). While the node is offline every
model with `requires_internet` leaves the catalogue: routing never picks one (the primary
becomes the first local/LAN model) and the descriptors are announced again without them
(none at all when no local model is left); back online they are restored and announced.

Config is duck-typed: `llm_config.backends` is an iterable of objects (or dicts) with
`name` ("llama_cpp" | "openai" | "lmstudio" | "ollama"), `url`, `model`, `model_path`,
`api_key_env`, `ctx`, `max_concurrent`, `models` (all optional but `name`).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Sequence

from hearthnet.constants import LLM_GENERATION_DEFAULT_TIMEOUT_SECONDS
from hearthnet.config import LLM_BACKEND_SNIPPET
from hearthnet.errors import HearthNetError
from hearthnet.bus.service import Capability, Request, StreamFrames
from hearthnet.services.llm.backends.base import LlmBackend, Token, Usage

log = logging.getLogger(__name__)

BACKEND_KINDS = ("llama_cpp", "openai", "lmstudio", "ollama")
# Other names for OpenAI-compatible servers.
OPENAI_ALIASES = ("vllm", "localai")
ROLES = ("system", "user", "assistant")
MAX_STOP_SEQUENCES = 16

# --------------------------------------------------------------------------- schemas

_STOP_REASON = {"type": "string", "enum": ["end", "max_tokens", "stop_sequence", "cancelled"]}

_META_SCHEMA = {
    "type": "object",
    "required": ["model", "tokens_in", "tokens_out", "stop_reason", "ms"],
    "properties": {
        "model": {"type": "string"},
        "tokens_in": {"type": "integer", "minimum": 0},
        "tokens_out": {"type": "integer", "minimum": 0},
        "stop_reason": _STOP_REASON,
        "ms": {"type": "integer", "minimum": 0},
    },
}

_PARAMS_SCHEMA = {
    "type": "object",
    "properties": {
        "model": {"type": "string", "description": "a model of params.models; default: params.model"},
        "ctx": {"type": "integer", "minimum": 1, "description": "context needed; must not exceed the model's"},
    },
}


def _sampling(max_tokens_default: int) -> dict[str, Any]:
    return {
        "max_tokens": {"type": "integer", "minimum": 1, "default": max_tokens_default},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2, "default": 0.7},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.95},
        "stop": {
            "oneOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "maxItems": MAX_STOP_SEQUENCES,
                 "items": {"type": "string", "minLength": 1}},
            ]
        },
        "seed": {"type": ["integer", "null"], "default": None},
        "stream": {"type": "boolean", "default": True},
    }


CHAT_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["input"],
    "properties": {
        "params": _PARAMS_SCHEMA,
        "input": {
            "type": "object",
            "required": ["messages"],
            "properties": {
                "messages": {
                    "type": "array",
                    "minItems": 1,
                    "description": "system messages first; at least one user message",
                    "items": {
                        "type": "object",
                        "required": ["role", "content"],
                        "properties": {
                            "role": {"type": "string", "enum": list(ROLES)},
                            "content": {"type": "string"},
                        },
                    },
                },
                **_sampling(1024),
                "tools": {"type": "array", "description": "Phase 2; accepted and ignored in 1.0"},
                "tool_choice": {"description": "Phase 2; accepted and ignored in 1.0"},
            },
        },
    },
}

CHAT_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["output", "meta"],
    "properties": {
        "output": {
            "type": "object",
            "required": ["message"],
            "properties": {
                "message": {
                    "type": "object",
                    "required": ["role", "content"],
                    "properties": {
                        "role": {"type": "string", "const": "assistant"},
                        "content": {"type": "string"},
                    },
                },
                "tool_calls": {"type": "array"},
            },
        },
        "meta": _META_SCHEMA,
    },
}

COMPLETE_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["input"],
    "properties": {
        "params": _PARAMS_SCHEMA,
        "input": {
            "type": "object",
            "required": ["prompt"],
            "properties": {"prompt": {"type": "string", "minLength": 1}, **_sampling(256)},
        },
    },
}

COMPLETE_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["output", "meta"],
    "properties": {
        "output": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
        "meta": _META_SCHEMA,
    },
}

STREAM_SCHEMA: dict[str, Any] = {
    "description": "data of the `token` frames, then exactly one `done` frame",
    "oneOf": [
        {
            "title": "token",
            "type": "object",
            "required": ["text"],
            "properties": {
                "text": {"type": "string"},
                "logprob": {"type": ["number", "null"]},
            },
        },
        {
            "title": "done",
            "type": "object",
            "required": ["tokens_out", "stop_reason", "ms"],
            "properties": {
                "tokens_out": {"type": "integer", "minimum": 0},
                "stop_reason": _STOP_REASON,
                "ms": {"type": "integer", "minimum": 0},
                "tokens_in": {"type": "integer", "minimum": 0},
                "model": {"type": "string"},
            },
        },
    ],
}

# --------------------------------------------------------------------------- config


def _cfg(entry: Any, key: str, default: Any = None) -> Any:
    value = entry.get(key, default) if isinstance(entry, Mapping) else getattr(entry, key, default)
    return default if value is None or value == "" else value


def _resolve_model_path(raw: str) -> Path:
    path = Path(raw).expanduser()
    if path.is_absolute() or path.exists():
        return path
    from hearthnet.paths import default_paths

    in_models_dir = default_paths().data_dir / "models" / path
    return in_models_dir if in_models_dir.exists() else path


def build_backend(entry: Any, default_threads: int | None = None) -> LlmBackend:
    """One backend from one `[[llm.backends]]` entry. Raises ValueError/ImportError/
    OSError/HearthNetError when it cannot be built."""
    kind = str(_cfg(entry, "name", "")).strip().lower()
    url = _cfg(entry, "url")
    model = _cfg(entry, "model")
    models = _cfg(entry, "models")
    models = tuple(str(m) for m in models) if models else None
    ctx = _cfg(entry, "ctx")
    max_concurrent = _cfg(entry, "max_concurrent")
    api_key_env = _cfg(entry, "api_key_env")
    if kind == "llama_cpp":
        from hearthnet.services.llm.backends.llama_cpp import LlamaCppBackend

        model_path = _cfg(entry, "model_path")
        name = model
        if model_path is None and model and str(model).endswith(".gguf"):
            model_path, name = model, None  # spec style: `model = "file.gguf"`
        if model_path is None:
            raise ValueError("llama_cpp backend needs `model_path` (a .gguf file)")
        return LlamaCppBackend(
            _resolve_model_path(str(model_path)),
            model_name=name,
            ctx=int(ctx) if ctx else None,
            n_threads=_cfg(entry, "n_threads", default_threads),
            gpu_layers=int(_cfg(entry, "gpu_layers", 0)),
        )
    if kind in ("openai", "lmstudio") + OPENAI_ALIASES:
        from hearthnet.services.llm.backends.openai import LMSTUDIO_DEFAULT_URL, OpenAiBackend

        if url is None:
            if kind != "lmstudio":
                raise ValueError("openai backend needs `url` (e.g. http://127.0.0.1:8080/v1)")
            url = LMSTUDIO_DEFAULT_URL
        return OpenAiBackend(str(url), model, models=models, api_key_env=api_key_env,
                             ctx=ctx, max_concurrent=max_concurrent,
                             kind="openai" if kind in OPENAI_ALIASES else kind)
    if kind == "ollama":
        from hearthnet.services.llm.backends.ollama import OllamaBackend

        return OllamaBackend(url, model, models=models, api_key_env=api_key_env, ctx=ctx,
                             max_concurrent=max_concurrent)
    raise ValueError(f"unknown llm backend {kind!r} (known: {', '.join(BACKEND_KINDS)})")


# --------------------------------------------------------------------------- validation


def _bad(message: str) -> HearthNetError:
    return HearthNetError("bad_request", message)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _sampling_args(inp: dict[str, Any], max_tokens_default: int) -> dict[str, Any]:
    max_tokens = inp.get("max_tokens", max_tokens_default)
    if max_tokens is None:
        max_tokens = max_tokens_default
    if not _is_int(max_tokens) or max_tokens < 1:
        raise _bad(f"input.max_tokens must be a positive integer, got {max_tokens!r}")
    temperature = inp.get("temperature", 0.7)
    temperature = 0.7 if temperature is None else temperature
    if not _is_num(temperature) or not 0 <= temperature <= 2:
        raise _bad(f"input.temperature must be a number between 0 and 2, got {temperature!r}")
    top_p = inp.get("top_p", 0.95)
    top_p = 0.95 if top_p is None else top_p
    if not _is_num(top_p) or not 0 < top_p <= 1:
        raise _bad(f"input.top_p must be a number in (0, 1], got {top_p!r}")
    stop = inp.get("stop")
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list):
        stops = stop
    else:
        raise _bad("input.stop must be a string or a list of strings")
    if len(stops) > MAX_STOP_SEQUENCES:
        raise _bad(f"input.stop has {len(stops)} entries; at most {MAX_STOP_SEQUENCES} are allowed")
    if not all(isinstance(s, str) and s for s in stops):
        raise _bad("input.stop entries must be non-empty strings")
    seed = inp.get("seed")
    if seed is not None and not _is_int(seed):
        raise _bad(f"input.seed must be an integer or null, got {seed!r}")
    return {
        "max_tokens": max_tokens,
        "temperature": float(temperature),
        "top_p": float(top_p),
        "stop": stops,
        "seed": seed,
    }


def _input_of(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _bad("the request body must be an object {\"params\": {...}, \"input\": {...}}")
    inp = body.get("input")
    if not isinstance(inp, dict):
        raise _bad("input must be an object")
    params = body.get("params", {})
    if params is not None and not isinstance(params, dict):
        raise _bad("params must be an object")
    return inp


def validate_chat_input(body: Any) -> dict[str, Any]:
    """Backend kwargs for llm.chat, or bad_request saying what is wrong."""
    inp = _input_of(body)
    messages = inp.get("messages")
    if messages is None:
        raise _bad("input.messages is required")
    if not isinstance(messages, list):
        raise _bad("input.messages must be a list of {role, content} objects")
    if not messages:
        raise _bad("input.messages is empty; send at least one user message")
    clean: list[dict[str, str]] = []
    seen_other = False
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise _bad(f"input.messages[{i}] must be an object with role and content")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise _bad(f"input.messages[{i}].role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise _bad(
                f"input.messages[{i}].content must be a string (content parts / images are not "
                "supported by llm.chat@1.0)"
            )
        if role == "system" and seen_other:
            raise _bad(f"input.messages[{i}]: system messages must come before user/assistant messages")
        if role != "system":
            seen_other = True
        clean.append({"role": role, "content": content})
    if not any(m["role"] == "user" for m in clean):
        raise _bad("input.messages has no user message")
    return {"messages": clean, **_sampling_args(inp, 1024)}


def validate_complete_input(body: Any) -> dict[str, Any]:
    inp = _input_of(body)
    prompt = inp.get("prompt")
    if prompt is None:
        raise _bad("input.prompt is required")
    if not isinstance(prompt, str):
        raise _bad("input.prompt must be a string")
    if not prompt:
        raise _bad("input.prompt is empty")
    return {"prompt": prompt, **_sampling_args(inp, 256)}


# --------------------------------------------------------------------------- service


class LlmService:
    """Service protocol implementation hosted by the `llm` worker."""

    name = "llm"
    version = "1.0"

    def __init__(self, llm_config: Any = None, *, backends: Sequence[LlmBackend] | None = None,
                 threads: int | None = None, mode_bus: Any = None) -> None:
        """`threads`: llama.cpp threads per in-process model; replicas share the cores, and
        ggml's spinning threads collapse when oversubscribed."""
        self._backends: list[LlmBackend] = list(backends or [])
        self._skipped: list[dict[str, str]] = []
        entries: Iterable[Any] = _cfg(llm_config, "backends", ()) if llm_config is not None else ()
        for i, entry in enumerate(entries or ()):
            kind = str(_cfg(entry, "name", f"#{i}"))
            try:
                self._backends.append(build_backend(entry, threads))
            except (ValueError, TypeError, ImportError, OSError, HearthNetError) as exc:
                reason = exc.message if isinstance(exc, HearthNetError) else str(exc)
                log.warning("llm: skipping backend %s: %s", kind, reason)
                self._skipped.append({"backend": kind, "error": reason})
        self._in_flight = 0
        self._served = 0
        self._errors = 0
        self._dup_warned: set[str] = set()
        self.mode_bus = mode_bus  # a BusClient to follow emergency.watch (None: always online)
        self.offline = False  # internet-only models withdrawn (this node's emergency mode)
        self.announce_changes: Any = None  # set by the worker runtime
        self._follow: asyncio.Task | None = None

    # ------------------------------------------------------------------ emergency mode
    def set_mode(self, mode: str | None, state: Any = None) -> None:
        """Offline: withdraw internet-only models; otherwise offer them again."""
        from hearthnet.emergency.effects import internet_backends_offered

        offline = not internet_backends_offered(mode)
        if offline == self.offline:
            return
        self.offline = offline
        withdrawn = [m.name for b in self._backends for m in b.models if m.requires_internet]
        log.warning("llm: %s internet-only models %s", "withdrawing" if offline else "restoring", withdrawn)
        if self.announce_changes is not None:
            self.announce_changes()

    # ------------------------------------------------------------------ catalogue
    @property
    def backends(self) -> list[LlmBackend]:
        return list(self._backends)

    def _catalogue(self) -> list[tuple[dict[str, Any], LlmBackend]]:
        seen: set[str] = set()
        out: list[tuple[dict[str, Any], LlmBackend]] = []
        for backend in self._backends:
            for m in backend.models:
                if self.offline and m.requires_internet:
                    continue
                if m.name in seen:
                    if m.name not in self._dup_warned:
                        self._dup_warned.add(m.name)
                        log.warning("llm: model %s is served by several backends; using the "
                                    "first", m.name)
                    continue
                seen.add(m.name)
                out.append((
                    {
                        "name": m.name,
                        "quant": m.quant,
                        "ctx": m.ctx_max,
                        "backend": backend.name,
                        "modalities": list(m.modalities),
                        "requires_internet": m.requires_internet,
                    },
                    backend,
                ))
        return out

    def _params(self) -> dict[str, Any]:
        catalogue = [entry for entry, _ in self._catalogue()]
        primary = catalogue[0]
        return {
            "model": primary["name"],
            "quant": primary["quant"],
            "ctx": primary["ctx"],
            "backend": primary["backend"],
            "modalities": primary["modalities"],
            "requires_internet": all(e["requires_internet"] for e in catalogue),
            "models": catalogue,
        }

    def capabilities(self) -> list[Capability]:
        if not self._backends or not self._catalogue():
            return []
        params = self._params()
        max_concurrent = sum(max(1, b.max_concurrent()) for b in self._backends)
        common = dict(
            version="1.0",
            stability="stable",
            params=params,
            max_concurrent=max_concurrent,
            trust_required="member",
            timeout_seconds=LLM_GENERATION_DEFAULT_TIMEOUT_SECONDS,
            idempotent=False,
            stream_schema=STREAM_SCHEMA,
        )
        return [
            Capability(name="llm.chat", handler=self.handle_chat,
                       request_schema=CHAT_REQUEST_SCHEMA, response_schema=CHAT_RESPONSE_SCHEMA,
                       **common),
            Capability(name="llm.complete", handler=self.handle_complete,
                       request_schema=COMPLETE_REQUEST_SCHEMA,
                       response_schema=COMPLETE_RESPONSE_SCHEMA, **common),
        ]

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Warm the first backend. If it cannot load, it is dropped (recorded for
        health()) and the next one is tried, so the descriptors only list working models."""
        if self.mode_bus is not None:
            from hearthnet.emergency.follow import follow_mode

            await self.mode_bus.start()
            self._follow = asyncio.ensure_future(follow_mode(self.mode_bus, self.set_mode))
        while self._backends:
            first = self._backends[0]
            try:
                await first.warm()
                return
            except HearthNetError as exc:
                log.error("llm: backend %s failed to start: %s", first.name, exc.message)
                self._skipped.append({"backend": first.name, "error": exc.message})
                self._backends.pop(0)
                await first.close()

    async def stop(self) -> None:
        if self._follow is not None:
            self._follow.cancel()
            await self.mode_bus.close()
        for backend in self._backends:
            try:
                await backend.close()
            except (HearthNetError, OSError, RuntimeError) as exc:
                log.warning("llm: closing backend %s failed: %s", backend.name, exc)

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "backends": [b.health() for b in self._backends],
            "skipped": list(self._skipped),
            "in_flight": self._in_flight,
            "served": self._served,
            "errors": self._errors,
        }
        if not self._backends:
            reasons = "".join(f"  {s['backend']}: {s['error']}\n" for s in self._skipped)
            prefix = ("llm: no backend configured — add one to config.toml:\n" if not reasons else
                      "llm: no backend configured — every backend failed:\n" + reasons
                      + "fix it or add one to config.toml:\n")
            out["note"] = prefix + LLM_BACKEND_SNIPPET
        elif not self._catalogue():
            out["note"] = "llm: offline — every configured model needs the internet; none offered"
            out["offline_withdrawn"] = True
        else:
            out["primary_model"] = self._catalogue()[0][0]["name"]
            out["offline_withdrawn"] = self.offline
            if self.offline:
                out["note"] = "llm: offline — internet-only models withdrawn"
            if self._skipped:
                out["note"] = (out.get("note", "") + "; " if out.get("note") else "") + "llm: skipped " + "; ".join(
                    f"{s['backend']} ({s['error']})" for s in self._skipped)
        return out

    # ------------------------------------------------------------------ handlers
    async def handle_chat(self, request: Request) -> dict[str, Any] | StreamFrames:
        return await self._handle(request, "chat")

    async def handle_complete(self, request: Request) -> dict[str, Any] | StreamFrames:
        return await self._handle(request, "complete")

    def _route(self, body: Any) -> tuple[str, LlmBackend]:
        params = body.get("params") if isinstance(body, dict) else None
        params = params if isinstance(params, dict) else {}
        catalogue = self._catalogue()
        if not catalogue:
            raise HearthNetError("not_implemented", "llm: no backend configured on this node")
        model = params.get("model")
        if model is None or model == "":
            entry, backend = catalogue[0]
        else:
            if not isinstance(model, str):
                raise _bad(f"params.model must be a string, got {model!r}")
            match = [(e, b) for e, b in catalogue if e["name"] == model]
            if not match:
                names = ", ".join(e["name"] for e, _ in catalogue)
                raise HearthNetError(
                    "not_implemented", f"model {model!r} is not served here; available: {names}"
                )
            entry, backend = match[0]
        ctx = params.get("ctx")
        if ctx is not None:
            if not _is_int(ctx) or ctx < 1:
                raise _bad(f"params.ctx must be a positive integer, got {ctx!r}")
            if ctx > entry["ctx"]:
                raise _bad(f"params.ctx {ctx} exceeds the context of model {entry['name']!r} "
                           f"({entry['ctx']} tokens)")
        return entry["name"], backend

    async def _handle(self, request: Request, kind: str) -> dict[str, Any] | StreamFrames:
        started = time.monotonic()
        if request.deadline and started >= request.deadline:
            raise HearthNetError("timeout", "the request's deadline passed before generation began")
        args = validate_chat_input(request.body) if kind == "chat" else validate_complete_input(request.body)
        model, backend = self._route(request.body)
        if request.stream:
            return self._stream(backend, kind, model, args, request.deadline, started)
        return await self._whole(backend, kind, model, args, request.deadline, started)

    def _open(self, backend: LlmBackend, kind: str, model: str, args: dict[str, Any],
              cancel: asyncio.Event) -> AsyncIterator[Token]:
        if kind == "chat":
            return backend.chat(model=model, cancel=cancel, **args)
        return backend.complete(model=model, cancel=cancel, **args)

    async def _next(self, it: AsyncIterator[Token], deadline: float, started: float) -> Token:
        if not deadline:
            return await anext(it)
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout(remaining):
                return await anext(it)
        except TimeoutError:
            raise HearthNetError(
                "timeout",
                f"generation passed its deadline after {int((time.monotonic() - started) * 1000)} ms",
            ) from None

    async def _generate(
        self, backend: LlmBackend, kind: str, model: str, args: dict[str, Any],
        deadline: float, started: float,
    ) -> AsyncIterator[Token]:
        """Backend tokens under the deadline; ends with the stop token. Closing this
        generator (or cancelling its task) stops the backend before returning."""
        cancel = asyncio.Event()
        it = self._open(backend, kind, model, args, cancel)
        self._in_flight += 1
        try:
            while True:
                try:
                    tok = await self._next(it, deadline, started)
                except StopAsyncIteration:
                    raise HearthNetError(
                        "internal_error", f"{backend.name} backend ended without a final token"
                    ) from None
                yield tok
                if tok.stop:
                    self._served += 1
                    return
        except HearthNetError:
            self._errors += 1
            raise
        finally:
            self._in_flight -= 1
            cancel.set()
            await it.aclose()

    async def _whole(
        self, backend: LlmBackend, kind: str, model: str, args: dict[str, Any],
        deadline: float, started: float,
    ) -> dict[str, Any]:
        parts: list[str] = []
        usage: Usage | None = None
        gen = self._generate(backend, kind, model, args, deadline, started)
        try:
            async for tok in gen:
                parts.append(tok.text)
                if tok.stop:
                    usage = tok.usage
        finally:
            await gen.aclose()
        usage = usage or Usage(0, 0, "end", exact=False)
        text = "".join(parts)
        output: dict[str, Any] = (
            {"message": {"role": "assistant", "content": text}} if kind == "chat" else {"text": text}
        )
        return {"output": output, "meta": self._meta(model, usage, started)}

    async def _stream(
        self, backend: LlmBackend, kind: str, model: str, args: dict[str, Any],
        deadline: float, started: float,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        gen = self._generate(backend, kind, model, args, deadline, started)
        usage: Usage | None = None
        try:
            async for tok in gen:
                if tok.text:
                    yield "token", {"text": tok.text, "logprob": tok.logprob}
                if tok.stop:
                    usage = tok.usage
        finally:
            await gen.aclose()
        meta = self._meta(model, usage or Usage(0, 0, "end", exact=False), started)
        yield "done", {
            "tokens_out": meta["tokens_out"],
            "stop_reason": meta["stop_reason"],
            "ms": meta["ms"],
            "tokens_in": meta["tokens_in"],
            "model": model,
        }

    @staticmethod
    def _meta(model: str, usage: Usage, started: float) -> dict[str, Any]:
        return {
            "model": model,
            "tokens_in": usage.tokens_in,
            "tokens_out": usage.tokens_out,
            "stop_reason": usage.stop_reason,
            "ms": int(round((time.monotonic() - started) * 1000)),
        }
