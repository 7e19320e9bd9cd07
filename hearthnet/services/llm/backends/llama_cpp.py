"""In-process llama.cpp on one GGUF file (llama-cpp-python).

Threading model: the model runs in a dedicated thread per generation, never on the event
loop, so the worker's heartbeats keep flowing. Tokens travel to the loop through an
`asyncio.Queue` fed with `loop.call_soon_threadsafe`. One generation at a time per model
(a lock; `max_concurrent` is 1). Cancellation sets a flag that the generation thread
checks after every token; while the prompt is being evaluated (which can take seconds for
a long prompt on a CPU) a llama.cpp abort callback checks the same flag between graph
nodes. Either way the engine stops well within 200 ms, and the async side waits for the
thread to acknowledge before `aclose()` / task cancellation completes, so "closed" means
"the engine is idle".

Token counts are exact: tokens_in is the length of the tokenized prompt, tokens_out the
number of sampled tokens (an end-of-generation token is not counted).

Chat formatting uses the model's own `tokenizer.chat_template` (Jinja, as llama.cpp and
HF do). A GGUF without a template falls back to ChatML.

The model loads in `warm()` (off the loop) or lazily on the first request. The context
size is the config `ctx`, else the file's `<arch>.context_length` capped at
`AUTO_CTX_CAP` (a 128k-context model would otherwise reserve tens of GB of KV cache).
"""
from __future__ import annotations

import asyncio
import codecs
import logging
import math
import os
import secrets
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence

from hearthnet.errors import HearthNetError
from hearthnet.services.llm.backends.base import (
    BackendModel,
    CancelEvent,
    LlmBackend,
    Token,
    Usage,
)

log = logging.getLogger(__name__)

AUTO_CTX_CAP = 8192
DEFAULT_CTX = 4096
# How long the async side waits for the generation thread to acknowledge a cancel.
CANCEL_ACK_TIMEOUT_S = 2.0
# How often a generation queued behind another one checks for its cancellation.
LOCK_POLL_S = 0.02

# llama_ftype (general.file_type) -> quant label.
_FILE_TYPES = {
    0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 7: "q8_0", 8: "q5_0", 9: "q5_1",
    10: "q2_k", 11: "q3_k_s", 12: "q3_k_m", 13: "q3_k_l", 14: "q4_k_s", 15: "q4_k_m",
    16: "q5_k_s", 17: "q5_k_m", 18: "q6_k", 19: "iq2_xxs", 20: "iq2_xs", 21: "q2_k_s",
    22: "iq3_xs", 23: "iq3_xxs", 24: "iq1_s", 25: "iq4_nl", 26: "iq3_s", 27: "iq3_m",
    28: "iq2_s", 29: "iq2_m", 30: "iq4_xs", 31: "iq1_m", 32: "bf16", 36: "tq1_0",
    37: "tq2_0",
}

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
           10: "<Q", 11: "<q", 12: "<d"}


def read_gguf_metadata(path: Path) -> dict[str, Any]:
    """The scalar metadata of a GGUF file (arrays are skipped). Raises ValueError when
    the file is not GGUF v2/v3."""
    with open(path, "rb") as f:

        def read(n: int) -> bytes:
            b = f.read(n)
            if len(b) != n:
                raise ValueError(f"{path}: truncated GGUF header")
            return b

        def string() -> str:
            (n,) = struct.unpack("<Q", read(8))
            return read(n).decode("utf-8", errors="replace")

        if read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        (version,) = struct.unpack("<I", read(4))
        if version not in (2, 3):
            raise ValueError(f"{path}: unsupported GGUF version {version}")
        _tensors, n_kv = struct.unpack("<QQ", read(16))
        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key = string()
            (vtype,) = struct.unpack("<I", read(4))
            if vtype == 8:
                meta[key] = string()
            elif vtype == 9:
                etype, count = struct.unpack("<IQ", read(12))
                if etype == 8:
                    for _ in range(count):
                        (n,) = struct.unpack("<Q", read(8))
                        f.seek(n, os.SEEK_CUR)
                elif etype in _SCALAR:
                    f.seek(struct.calcsize(_SCALAR[etype]) * count, os.SEEK_CUR)
                else:
                    raise ValueError(f"{path}: nested GGUF arrays are not supported")
            elif vtype in _SCALAR:
                fmt = _SCALAR[vtype]
                (meta[key],) = struct.unpack(fmt, read(struct.calcsize(fmt)))
            else:
                raise ValueError(f"{path}: unknown GGUF value type {vtype} for {key}")
        return meta


@dataclass(eq=False)
class _Job:
    """One generation, shared between the async side and the generation thread."""

    build_prompt: Callable[[Any], tuple[list[int], list[str]]]  # llm -> (tokens, extra stops)
    max_tokens: int
    temperature: float
    top_p: float
    stop: list[str]
    seed: int | None
    cancel: CancelEvent | None
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    stop_flag: threading.Event = field(default_factory=threading.Event)

    def cancelled(self) -> bool:
        return self.stop_flag.is_set() or (self.cancel is not None and self.cancel.is_set())

    def send(self, item: tuple) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.stop_flag.set()


class LlamaCppBackend(LlmBackend):
    name = "llama_cpp"

    def __init__(
        self,
        model_path: Path | str,
        *,
        model_name: str | None = None,
        ctx: int | None = None,
        n_threads: int | None = None,
        gpu_layers: int = 0,
    ) -> None:
        import llama_cpp  # noqa: F401  (fail at build time when the engine is missing)

        path = Path(model_path).expanduser()
        if not path.is_file():
            raise ValueError(f"model file not found: {path}")
        meta = read_gguf_metadata(path)
        arch = str(meta.get("general.architecture", "llama"))
        file_ctx = int(meta.get(f"{arch}.context_length", 0) or 0)
        if ctx:
            n_ctx = int(ctx)
        elif file_ctx:
            n_ctx = min(file_ctx, AUTO_CTX_CAP)
            if file_ctx > AUTO_CTX_CAP:
                log.info("llama_cpp: %s trained for %d tokens; using n_ctx=%d (set `ctx` "
                         "in config to change)", path.name, file_ctx, n_ctx)
        else:
            n_ctx = DEFAULT_CTX
        self.model_path = path
        self._n_ctx = n_ctx
        self._n_threads = n_threads or os.cpu_count() or 1
        self._gpu_layers = gpu_layers
        self._model = BackendModel(
            name=model_name or path.stem,
            quant=_FILE_TYPES.get(meta.get("general.file_type", -1), "unknown"),
            ctx_max=n_ctx,
            modalities=("text",),
            requires_internet=False,
        )
        self._llm: Any = None
        self._load_lock = threading.Lock()
        self._gen_lock = threading.Lock()
        self._active: set[_Job] = set()
        self._closed = False
        self._served = 0
        self._last_error: str | None = None
        self._chat_formatter: Any = None

    # ------------------------------------------------------------------ catalogue
    @property
    def models(self) -> list[BackendModel]:
        return [self._model]

    def max_concurrent(self, model: str | None = None) -> int:
        return 1

    def health(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "models": [self._model.name],
            "model_path": str(self.model_path),
            "loaded": self._llm is not None,
            "n_ctx": self._n_ctx,
            "n_threads": self._n_threads,
            "busy": bool(self._active),
            "served": self._served,
            "last_error": self._last_error,
        }

    @property
    def busy(self) -> bool:
        """True while a generation thread is running (tests use it to prove a stop)."""
        return bool(self._active)

    # ------------------------------------------------------------------ lifecycle
    def _ensure_loaded(self) -> Any:
        with self._load_lock:
            if self._closed:
                raise HearthNetError("internal_error", "llama_cpp backend is closed")
            if self._llm is None:
                import llama_cpp
                from llama_cpp import llama_chat_format

                llm = llama_cpp.Llama(
                    model_path=str(self.model_path),
                    n_ctx=self._n_ctx,
                    n_threads=self._n_threads,
                    n_threads_batch=self._n_threads,
                    n_gpu_layers=self._gpu_layers,
                    verbose=False,
                )
                template = llm.metadata.get("tokenizer.chat_template")
                if template:
                    eos, bos = llm.token_eos(), llm.token_bos()
                    self._chat_formatter = llama_chat_format.Jinja2ChatFormatter(
                        template=template,
                        eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
                        bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
                        stop_token_ids=[eos],
                    )
                else:
                    self._chat_formatter = llama_chat_format.format_chatml
                self._llm = llm
            return self._llm

    async def warm(self, model: str | None = None) -> None:
        try:
            await asyncio.to_thread(self._ensure_loaded)
        except (ValueError, RuntimeError, OSError) as exc:
            self._last_error = f"cannot load {self.model_path}: {exc}"
            raise HearthNetError("internal_error", self._last_error) from exc

    async def close(self) -> None:
        self._closed = True
        for job in list(self._active):
            job.stop_flag.set()

        def _free() -> None:
            if not self._gen_lock.acquire(timeout=CANCEL_ACK_TIMEOUT_S):
                # Freeing the model under a running generation would crash the process.
                log.warning("llama_cpp: a generation did not stop; leaving the model loaded")
                return
            try:
                with self._load_lock:
                    if self._llm is not None:
                        self._llm.close()
                        self._llm = None
            finally:
                self._gen_lock.release()

        await asyncio.to_thread(_free)

    # ------------------------------------------------------------------ generation
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
        msgs = [{"role": m["role"], "content": m["content"]} for m in messages]

        def build(llm: Any) -> tuple[list[int], list[str]]:
            import jinja2

            try:
                result = self._chat_formatter(messages=msgs)
            except (jinja2.TemplateError, ValueError, TypeError, KeyError) as exc:
                # the template's raise_exception() raises ValueError ("roles must alternate")
                raise HearthNetError(
                    "bad_request", f"the model's chat template rejected the messages: {exc}"
                ) from exc
            tokens = llm.tokenize(
                result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
            )
            extra = result.stop if isinstance(result.stop, list) else (
                [result.stop] if result.stop else [])
            return tokens, [s for s in extra if s]

        return self._generate(model, build, max_tokens, temperature, top_p, stop, seed, cancel)

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
        def build(llm: Any) -> tuple[list[int], list[str]]:
            return llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True), []

        return self._generate(model, build, max_tokens, temperature, top_p, stop, seed, cancel)

    async def _generate(
        self,
        model: str,
        build: Callable[[Any], tuple[list[int], list[str]]],
        max_tokens: int,
        temperature: float,
        top_p: float,
        stop: Sequence[str] | None,
        seed: int | None,
        cancel: CancelEvent | None,
    ) -> AsyncIterator[Token]:
        if model != self._model.name:
            raise HearthNetError(
                "not_implemented", f"model {model!r} is not served by this llama_cpp backend"
            )
        if self._closed:
            raise HearthNetError("internal_error", "llama_cpp backend is closed")
        loop = asyncio.get_running_loop()
        job = _Job(
            build_prompt=build,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=[s for s in (stop or []) if s],
            seed=seed,
            cancel=cancel,
            loop=loop,
            queue=asyncio.Queue(),
        )
        self._active.add(job)
        thread = threading.Thread(
            target=self._run, args=(job,), name=f"llama-gen-{self._model.name}", daemon=True
        )
        finished = False
        try:
            thread.start()
            while True:
                kind, a, b = await job.queue.get()
                if kind == "tok":
                    yield Token(text=a, logprob=b)
                elif kind == "end":
                    finished = True
                    yield Token(text=a, logprob=None, stop=True, usage=b)
                    return
                else:  # "err"
                    finished = True
                    raise a
        finally:
            if not finished:
                # Closed or cancelled mid-generation: stop the engine, wait until it is idle.
                job.stop_flag.set()
                if thread.is_alive():
                    await self._await_end(job)
            self._active.discard(job)

    async def _await_end(self, job: _Job) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + CANCEL_ACK_TIMEOUT_S
        while True:
            remaining = until - loop.time()
            if remaining <= 0:
                log.warning("llama_cpp: generation did not acknowledge cancel within %.1fs",
                            CANCEL_ACK_TIMEOUT_S)
                return
            try:
                async with asyncio.timeout(remaining):
                    kind, _, _ = await job.queue.get()
            except TimeoutError:
                continue
            if kind in ("end", "err"):
                return

    # ------------------------------------------------------------------ engine thread
    def _run(self, job: _Job) -> None:
        try:
            if job.cancelled():
                job.send(("end", "", Usage(0, 0, "cancelled")))
                return
            llm = self._ensure_loaded()
            # Queue behind a running generation, but leave the queue promptly on cancel.
            while not self._gen_lock.acquire(timeout=LOCK_POLL_S):
                if job.cancelled():
                    job.send(("end", "", Usage(0, 0, "cancelled")))
                    return
            try:
                if self._closed:
                    raise HearthNetError("internal_error", "llama_cpp backend is closed")
                text, usage = self._generate_locked(llm, job)
            finally:
                self._gen_lock.release()
            self._served += 1
            job.send(("end", text, usage))
        except HearthNetError as exc:
            job.send(("err", exc, None))
        except Exception as exc:  # any engine failure must still end the stream
            self._last_error = f"{type(exc).__name__}: {exc}"
            log.exception("llama_cpp generation failed")
            job.send(("err", HearthNetError("internal_error", f"llama.cpp failed: {exc}"), None))

    def _generate_locked(self, llm: Any, job: _Job) -> tuple[str, Usage]:
        """Run one generation. Returns the final text chunk and the usage."""
        import llama_cpp
        import numpy as np

        prompt, extra_stops = job.build_prompt(llm)
        n_in = len(prompt)
        if n_in >= self._n_ctx:
            raise HearthNetError(
                "bad_request",
                f"context too long: the prompt is {n_in} tokens, model "
                f"{self._model.name!r} has a context of {self._n_ctx} tokens",
            )
        stops = list(dict.fromkeys(job.stop + extra_stops))
        stop_ids: set[int] = set()
        for s in extra_stops:  # template end-of-turn markers that are single special tokens
            ids = llm.tokenize(s.encode("utf-8"), add_bos=False, special=True)
            if len(ids) == 1:
                stop_ids.add(ids[0])
        vocab = llm._model.vocab
        n_vocab = llm.n_vocab()
        ctx = llm.ctx

        llm.set_seed(job.seed if job.seed is not None else secrets.randbits(31))

        @llama_cpp.ggml_abort_callback
        def abort_cb(_data: Any) -> bool:
            return job.cancelled()

        llama_cpp.llama_set_abort_callback(ctx, abort_cb, None)
        abort_installed = True
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""  # text not yet emitted (partial stop-sequence match)
        pending_lp = 0.0
        n_out = 0
        stop_reason = "end"
        gen = llm.generate(
            prompt,
            top_k=40,
            top_p=job.top_p,
            min_p=0.05,
            temp=job.temperature,
            repeat_penalty=1.0,
            reset=True,
        )
        try:
            for tok in gen:
                if abort_installed:  # prompt is evaluated: per-token checks from here on
                    llama_cpp.llama_set_abort_callback(ctx, llama_cpp.ggml_abort_callback(), None)
                    abort_installed = False
                if job.cancelled():
                    stop_reason = "cancelled"
                    break
                if llama_cpp.llama_vocab_is_eog(vocab, tok) or tok in stop_ids:
                    stop_reason = "end"
                    break
                n_out += 1
                logits = np.ctypeslib.as_array(
                    llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)
                )
                top = float(logits.max())
                lse = top + math.log(float(np.exp(logits - top).sum()))
                pending_lp += float(logits[tok]) - lse
                pending += decoder.decode(llm.detokenize([tok]))
                if stops:
                    hit = _find_stop(pending, stops)
                    if hit >= 0:
                        pending = pending[:hit]
                        stop_reason = "stop_sequence"
                        break
                    keep = _partial_stop_len(pending, stops)
                else:
                    keep = 0
                emit = pending[: len(pending) - keep]
                if emit:
                    job.send(("tok", emit, pending_lp))
                    pending = pending[len(emit):]
                    pending_lp = 0.0
                if n_out >= job.max_tokens or n_in + n_out >= self._n_ctx:
                    stop_reason = "max_tokens"
                    break
        except RuntimeError:
            if not job.cancelled():
                raise
            stop_reason = "cancelled"  # llama_decode aborted by the callback
        finally:
            gen.close()
            if abort_installed:
                llama_cpp.llama_set_abort_callback(ctx, llama_cpp.ggml_abort_callback(), None)
        if stop_reason == "cancelled":
            return "", Usage(n_in, n_out, "cancelled")
        if stop_reason != "stop_sequence":
            pending += decoder.decode(b"", final=True)
        return pending, Usage(n_in, n_out, stop_reason)


def _find_stop(text: str, stops: Sequence[str]) -> int:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else -1


def _partial_stop_len(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best
