"""LlmService on the real llama.cpp engine (tiny random-weight GGUF). Assertions are
about structure, never about the (meaningless) text."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import llama_cpp  # noqa: F401  -- the engine must be installed: fail, never skip
import pytest

from hearthnet.errors import HearthNetError
from hearthnet.bus.service import Request
from hearthnet.services.llm.backends.llama_cpp import LlamaCppBackend
from hearthnet.services.llm.service import (
    CHAT_RESPONSE_SCHEMA,
    COMPLETE_RESPONSE_SCHEMA,
    STREAM_SCHEMA,
    LlmService,
)
from hearthnet.testing.tiny_gguf import write_tiny_llama_gguf
from hearthnet.testing.waiting import wait_for_async

from .conftest import BIG_CTX, llama_config

STOP_REASONS = {"end", "max_tokens", "stop_sequence", "cancelled"}
# The contract's "a cancelled generation stops within 200 ms" is measured by
# bench/llm_cancel.py; these tests assert that it stops, never how fast.


def chat_body(max_tokens: int = 16, **extra: Any) -> dict[str, Any]:
    return {"params": {"model": "tiny"},
            "input": {"messages": [{"role": "user", "content": "hello there"}],
                      "max_tokens": max_tokens, **extra}}


def req(body: dict[str, Any], *, cap: str = "llm.chat", stream: bool = False,
        deadline: float = 0.0) -> Request:
    return Request(capability=cap, version="1.0", body=body, stream=stream, deadline=deadline)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def started(path: Path, ctx: int = 0) -> LlmService:
    svc = LlmService(llama_config(path, ctx=ctx))
    await svc.start()
    return svc


def handler(svc: LlmService, name: str):
    return {c.name: c.handler for c in svc.capabilities()}[name]


def backend(svc: LlmService) -> LlamaCppBackend:
    (b,) = svc.backends
    assert isinstance(b, LlamaCppBackend)
    return b


async def frames_of(gen: Any) -> list[tuple[str, dict[str, Any]]]:
    return [f async for f in gen]


def check_required(schema: dict[str, Any], doc: Any) -> None:
    """A small structural check against our JSON schemas: required keys, recursively."""
    if schema.get("type") == "object":
        assert isinstance(doc, dict)
        for key in schema.get("required", []):
            assert key in doc, f"missing {key}"
        for key, sub in schema.get("properties", {}).items():
            if key in doc:
                check_required(sub, doc[key])


# --------------------------------------------------------------------------- streaming


def test_chat_stream_yields_tokens_then_exactly_one_done(tiny_gguf: Path) -> None:
    async def go() -> list[tuple[str, dict[str, Any]]]:
        svc = await started(tiny_gguf)
        try:
            gen = await handler(svc, "llm.chat")(req(chat_body(max_tokens=24), stream=True))
            return await frames_of(gen)
        finally:
            await svc.stop()

    frames = run(go())
    events = [e for e, _ in frames]
    assert events.count("done") == 1 and events[-1] == "done"
    assert set(events[:-1]) == {"token"} and len(events) >= 2
    token_schema, done_schema = STREAM_SCHEMA["oneOf"]
    for _, data in frames[:-1]:
        check_required(token_schema, data)
        assert isinstance(data["text"], str) and data["text"]
        assert isinstance(data["logprob"], float) and data["logprob"] <= 0
    done = frames[-1][1]
    check_required(done_schema, done)
    assert 0 < done["tokens_out"] <= 24
    assert done["stop_reason"] in STOP_REASONS
    assert isinstance(done["ms"], int) and done["ms"] >= 0
    assert done["tokens_in"] > 0 and done["model"] == "tiny"


def test_complete_stream_and_whole(tiny_gguf: Path) -> None:
    async def go() -> tuple[list, dict]:
        svc = await started(tiny_gguf)
        try:
            h = handler(svc, "llm.complete")
            body = {"input": {"prompt": "the world", "max_tokens": 12, "seed": 5}}
            frames = await frames_of(await h(req(body, cap="llm.complete", stream=True)))
            whole = await h(req(body, cap="llm.complete"))
            return frames, whole
        finally:
            await svc.stop()

    frames, whole = run(go())
    assert frames[-1][0] == "done" and frames[-1][1]["tokens_out"] == 12
    check_required(COMPLETE_RESPONSE_SCHEMA, whole)
    assert isinstance(whole["output"]["text"], str) and whole["output"]["text"]
    assert whole["meta"]["tokens_out"] == 12 and whole["meta"]["stop_reason"] == "max_tokens"
    # same seed, same text, whether streamed or not
    assert "".join(d["text"] for e, d in frames if e == "token") == whole["output"]["text"]


# --------------------------------------------------------------------------- non-stream


def test_chat_non_stream_response_shape(tiny_gguf: Path) -> None:
    async def go() -> dict[str, Any]:
        svc = await started(tiny_gguf)
        try:
            return await handler(svc, "llm.chat")(req(chat_body(max_tokens=10)))
        finally:
            await svc.stop()

    res = run(go())
    check_required(CHAT_RESPONSE_SCHEMA, res)
    assert res["output"]["message"]["role"] == "assistant"
    assert isinstance(res["output"]["message"]["content"], str)
    meta = res["meta"]
    assert meta["model"] == "tiny"
    assert meta["tokens_in"] > 0 and meta["tokens_out"] == 10
    assert meta["stop_reason"] == "max_tokens"
    assert isinstance(meta["ms"], int)


def test_model_defaults_to_primary(tiny_gguf: Path) -> None:
    async def go() -> dict[str, Any]:
        svc = await started(tiny_gguf)
        try:
            body = {"input": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}}
            return await handler(svc, "llm.chat")(req(body))
        finally:
            await svc.stop()

    assert run(go())["meta"]["model"] == "tiny"


def test_seed_determinism(tiny_gguf: Path) -> None:
    async def go() -> list[str]:
        svc = await started(tiny_gguf)
        try:
            h = handler(svc, "llm.chat")
            texts = []
            for seed in (7, 7, 8):
                res = await h(req(chat_body(max_tokens=40, seed=seed, temperature=0.9)))
                texts.append(res["output"]["message"]["content"])
            return texts
        finally:
            await svc.stop()

    a, b, c = run(go())
    assert a == b
    assert a != c


def test_stop_sequence_ends_generation_before_the_match(tiny_gguf: Path) -> None:
    async def go() -> tuple[dict, dict]:
        svc = await started(tiny_gguf)
        try:
            h = handler(svc, "llm.complete")
            body = {"input": {"prompt": "the", "max_tokens": 60, "seed": 11}}
            full = await h(req(body, cap="llm.complete"))
            text = full["output"]["text"]
            stop = text[len(text) // 2: len(text) // 2 + 3]
            body["input"]["stop"] = [stop]
            cut = await h(req(body, cap="llm.complete"))
            return full, cut | {"stop": stop}
        finally:
            await svc.stop()

    full, cut = run(go())
    text = full["output"]["text"]
    assert cut["meta"]["stop_reason"] == "stop_sequence"
    assert cut["output"]["text"] == text[: text.find(cut["stop"])]
    assert cut["meta"]["tokens_out"] < full["meta"]["tokens_out"]


def test_generation_stops_at_context_end(tiny_gguf: Path) -> None:
    async def go() -> dict[str, Any]:
        svc = await started(tiny_gguf)  # n_ctx 512 from the file
        try:
            return await handler(svc, "llm.chat")(req(chat_body(max_tokens=100_000)))
        finally:
            await svc.stop()

    meta = run(go())["meta"]
    assert meta["stop_reason"] == "max_tokens"
    assert meta["tokens_in"] + meta["tokens_out"] == 512


# --------------------------------------------------------------------------- cancellation


async def _wait_busy(b: LlamaCppBackend, at_least_s: float = 0.1) -> None:
    await wait_for_async(lambda: b.busy, 5, 0.005, message="the generation started")
    await asyncio.sleep(at_least_s)
    assert b.busy, "the generation finished before it could be cancelled"


def engine_idle(b: LlamaCppBackend) -> bool:
    """No generation registered and the engine lock free: the generation thread has
    returned from llama.cpp (it releases the lock before it reports its end), not just
    been given up on by the caller."""
    return not b.busy and not b._gen_lock.locked()


def gen_threads_end() -> bool:
    """Every generation thread exits (it may still be returning from its last line when
    the stream has ended: join, with a generous guard against a hang, not a bound)."""
    threads = [t for t in threading.enumerate() if t.name.startswith("llama-gen-")]
    for t in threads:
        t.join(10)
    return not any(t.is_alive() for t in threads)


def test_cancel_by_closing_the_stream_stops_the_engine(tiny_gguf: Path) -> None:
    async def go() -> tuple[int, bool, int]:
        svc = await started(tiny_gguf, ctx=BIG_CTX)
        b = backend(svc)
        try:
            gen = await handler(svc, "llm.chat")(req(chat_body(max_tokens=1_000_000), stream=True))
            got = 0
            async for event, _ in gen:
                assert event == "token"
                got += 1
                if got == 50:
                    break
            assert b.busy
            await gen.aclose()
            idle_after = engine_idle(b)
            # the engine is free again: the next request is served normally
            res = await handler(svc, "llm.chat")(req(chat_body(max_tokens=4)))
            assert res["meta"]["tokens_out"] == 4
            return got, idle_after, b.health()["served"]
        finally:
            await svc.stop()

    got, idle_after, served = run(go())
    assert got == 50
    assert idle_after, "aclose() returned while llama.cpp was still generating"
    assert served == 2  # the cancelled generation ended, then the next one ran


def test_cancel_by_cancelling_the_handler_task_stops_the_engine(tiny_gguf: Path) -> None:
    async def go() -> None:
        svc = await started(tiny_gguf, ctx=BIG_CTX)
        b = backend(svc)
        try:
            task = asyncio.create_task(handler(svc, "llm.chat")(req(chat_body(max_tokens=1_000_000))))
            await _wait_busy(b)
            task.cancel()
            await asyncio.wait({task})
            assert task.cancelled()
            assert engine_idle(b), "the task ended while llama.cpp was still generating"
        finally:
            await svc.stop()

    run(go())


def test_cancel_the_task_iterating_a_stream_stops_the_engine(tiny_gguf: Path) -> None:
    """What the worker runtime does: cancel the task that drives the stream, then aclose."""

    async def go() -> None:
        svc = await started(tiny_gguf, ctx=BIG_CTX)
        b = backend(svc)
        try:
            gen = await handler(svc, "llm.complete")(
                req({"input": {"prompt": "the", "max_tokens": 1_000_000}}, cap="llm.complete",
                    stream=True))

            async def drive() -> None:
                async for _ in gen:
                    pass

            task = asyncio.create_task(drive())
            await _wait_busy(b)
            task.cancel()
            await asyncio.wait({task})
            await gen.aclose()
            assert task.cancelled()
            assert engine_idle(b), "llama.cpp was still generating after the cancel"
            assert gen_threads_end()
        finally:
            await svc.stop()

    run(go())


def test_backend_cancel_event_ends_stream_with_cancelled(tiny_gguf: Path) -> None:
    async def go() -> tuple[Any, int, int, bool]:
        b = LlamaCppBackend(tiny_gguf, model_name="tiny", ctx=BIG_CTX)
        await b.warm()
        try:
            ev = asyncio.Event()
            n = 0
            last = None
            async for tok in b.complete(model="tiny", prompt="the", max_tokens=1_000_000, cancel=ev):
                assert last is None, "a token after the final one"
                if tok.stop:
                    last = tok
                    continue
                n += 1
                if n == 20:
                    ev.set()
            assert last is not None, "no final token"
            return last, n, b._n_ctx, engine_idle(b)  # the stream has ended
        finally:
            await b.close()

    last, received, n_ctx, idle = run(go())
    assert last.usage.stop_reason == "cancelled"
    assert last.text == ""
    # tokens stopped arriving: nothing beyond what the engine had produced when it saw
    # the flag (it checks before every token), far short of the context end
    assert 20 <= received <= last.usage.tokens_out
    assert last.usage.tokens_in + last.usage.tokens_out < n_ctx
    assert idle


def test_deadline_gives_timeout_and_stops_the_engine(tiny_gguf: Path) -> None:
    async def go() -> tuple[HearthNetError, bool, bool, int]:
        svc = await started(tiny_gguf, ctx=BIG_CTX)
        b = backend(svc)
        try:
            deadline = time.monotonic() + 0.3
            with pytest.raises(HearthNetError) as info:
                await handler(svc, "llm.chat")(req(chat_body(max_tokens=1_000_000), deadline=deadline))
            idle, threads_end = engine_idle(b), gen_threads_end()
            # and the engine serves the next request
            res = await handler(svc, "llm.chat")(req(chat_body(max_tokens=3)))
            return info.value, idle, threads_end, res["meta"]["tokens_out"]
        finally:
            await svc.stop()

    err, idle, threads_end, next_out = run(go())
    assert err.code == "timeout"
    assert idle, "the timeout was raised while llama.cpp was still generating"
    assert threads_end
    assert next_out == 3


def test_deadline_in_a_stream_raises_timeout(tiny_gguf: Path) -> None:
    async def go() -> tuple[str, int]:
        svc = await started(tiny_gguf, ctx=BIG_CTX)
        try:
            gen = await handler(svc, "llm.chat")(
                req(chat_body(max_tokens=1_000_000), stream=True, deadline=time.monotonic() + 0.3))
            n = 0
            with pytest.raises(HearthNetError) as info:
                async for _ in gen:
                    n += 1
            return info.value.code, n
        finally:
            await svc.stop()

    code, n = run(go())
    assert code == "timeout" and n > 0


def test_deadline_already_passed(tiny_gguf: Path) -> None:
    async def go() -> None:
        svc = await started(tiny_gguf)
        try:
            with pytest.raises(HearthNetError) as info:
                await handler(svc, "llm.chat")(req(chat_body(), deadline=time.monotonic() - 1))
            assert info.value.code == "timeout"
        finally:
            await svc.stop()

    run(go())


# --------------------------------------------------------------------------- errors


BAD_CHAT_INPUTS = [
    ({"messages": "hello"}, "must be a list"),
    ({"messages": []}, "empty"),
    ({}, "messages is required"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "no user message"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "role must be one of"),
    ({"messages": [{"role": "user", "content": 42}]}, "content must be a string"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}, "content must be a string"),
    ({"messages": ["hi"]}, "must be an object"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]},
     "system messages must come before"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens must be a positive integer"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": "10"}, "max_tokens must be a positive integer"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2.5}, "max_tokens must be a positive integer"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": True}, "max_tokens must be a positive integer"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 3}, "temperature"),
    ({"messages": [{"role": "user", "content": "hi"}], "top_p": 0}, "top_p"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": [""]}, "stop"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": 5}, "stop"),
    ({"messages": [{"role": "user", "content": "hi"}], "seed": "x"}, "seed"),
]


@pytest.mark.parametrize("inp,fragment", BAD_CHAT_INPUTS)
def test_chat_bad_request(tiny_gguf: Path, inp: dict[str, Any], fragment: str) -> None:
    async def go() -> HearthNetError:
        svc = LlmService(llama_config(tiny_gguf))  # validation needs no loaded model
        with pytest.raises(HearthNetError) as info:
            await handler(svc, "llm.chat")(req({"params": {}, "input": inp}))
        return info.value

    err = run(go())
    assert err.code == "bad_request"
    assert fragment in err.message


@pytest.mark.parametrize("body,fragment", [
    ({"input": {}}, "prompt is required"),
    ({"input": {"prompt": 3}}, "prompt must be a string"),
    ({"input": {"prompt": ""}}, "prompt is empty"),
    ({"input": "the"}, "input must be an object"),
    ({"params": [], "input": {"prompt": "x"}}, "params must be an object"),
])
def test_complete_bad_request(tiny_gguf: Path, body: dict[str, Any], fragment: str) -> None:
    async def go() -> HearthNetError:
        svc = LlmService(llama_config(tiny_gguf))
        with pytest.raises(HearthNetError) as info:
            await handler(svc, "llm.complete")(req(body, cap="llm.complete"))
        return info.value

    err = run(go())
    assert err.code == "bad_request" and fragment in err.message


def test_context_too_long_is_bad_request(tiny_gguf: Path) -> None:
    async def go() -> HearthNetError:
        svc = await started(tiny_gguf)
        try:
            body = {"input": {"messages": [{"role": "user", "content": "the " * 700}]}}
            with pytest.raises(HearthNetError) as info:
                await handler(svc, "llm.chat")(req(body))
            return info.value
        finally:
            await svc.stop()

    err = run(go())
    assert err.code == "bad_request"
    assert "context too long" in err.message and "512" in err.message


def test_requested_ctx_above_the_models_is_bad_request(tiny_gguf: Path) -> None:
    async def go() -> HearthNetError:
        svc = LlmService(llama_config(tiny_gguf))
        body = chat_body()
        body["params"]["ctx"] = 4096
        with pytest.raises(HearthNetError) as info:
            await handler(svc, "llm.chat")(req(body))
        return info.value

    err = run(go())
    assert err.code == "bad_request" and "4096" in err.message and "512" in err.message


def test_unknown_model_is_not_implemented(tiny_gguf: Path) -> None:
    async def go() -> HearthNetError:
        svc = LlmService(llama_config(tiny_gguf))
        body = chat_body()
        body["params"]["model"] = "gpt-9"
        with pytest.raises(HearthNetError) as info:
            await handler(svc, "llm.chat")(req(body))
        return info.value

    err = run(go())
    assert err.code == "not_implemented"
    assert "gpt-9" in err.message and "tiny" in err.message


# --------------------------------------------------------------------------- descriptors


def test_descriptors(tiny_gguf: Path) -> None:
    svc = LlmService(llama_config(tiny_gguf))
    caps = svc.capabilities()
    assert [c.name for c in caps] == ["llm.chat", "llm.complete"]
    for cap in caps:
        d = cap.descriptor()
        assert d["version"] == "1.0" and d["stability"] == "stable"
        assert d["trust_required"] == "member" and d["timeout_seconds"] == 120
        assert d["idempotent"] is False and d["streams"] is True
        assert d["max_concurrent"] == 1
        assert d["schema_hash"].startswith("blake3:")
        p = d["params"]
        assert p["model"] == "tiny" and p["backend"] == "llama_cpp"
        assert p["ctx"] == 512 and p["quant"] == "f32" and p["requires_internet"] is False
        assert p["models"] == [{"name": "tiny", "quant": "f32", "ctx": 512, "backend": "llama_cpp",
                                "modalities": ["text"], "requires_internet": False}]
        assert cap.response_schema is not None and cap.stream_schema is STREAM_SCHEMA
    assert caps[0].schema_hash() != caps[1].schema_hash()


def test_model_name_defaults_to_the_file_stem(tiny_gguf: Path) -> None:
    cfg = SimpleNamespace(backends=[SimpleNamespace(name="llama_cpp", model_path=str(tiny_gguf))])
    (cap, _) = LlmService(cfg).capabilities()
    assert cap.params["model"] == tiny_gguf.stem


def test_catalogue_spans_backends_and_sums_concurrency(tiny_gguf: Path) -> None:
    cfg = {"backends": [
        {"name": "llama_cpp", "model_path": str(tiny_gguf), "model": "tiny"},
        {"name": "openai", "url": "http://127.0.0.1:9", "models": ["a", "b"], "max_concurrent": 3},
        {"name": "ollama", "url": "http://192.168.1.5:11434", "model": "llama3.2"},
        {"name": "openai", "url": "https://api.example.com/v1", "model": "cloud-1"},
    ]}
    (chat, complete) = LlmService(cfg).capabilities()
    assert chat.params["model"] == "tiny"
    names = [(m["name"], m["backend"], m["requires_internet"]) for m in chat.params["models"]]
    assert names == [("tiny", "llama_cpp", False), ("a", "openai", False), ("b", "openai", False),
                     ("llama3.2", "ollama", False), ("cloud-1", "openai", True)]
    assert chat.params["requires_internet"] is False
    assert chat.max_concurrent == 1 + 3 + 4 + 4
    assert complete.params == chat.params


# --------------------------------------------------------------------------- no backend


def test_no_backend_configured(tiny_gguf: Path) -> None:
    for cfg in (SimpleNamespace(backends=()), None, {"backends": []}):
        svc = LlmService(cfg)
        assert svc.capabilities() == []
        note = svc.health()["note"]
        assert note.startswith("llm: no backend configured — add one to config.toml:\n")
        assert "[[llm.backends]]" in note and 'name = "llama_cpp"' in note
        assert 'name = "openai"' in note


def test_all_backends_failing_gives_no_capabilities_and_a_note(tmp_path: Path) -> None:
    cfg = SimpleNamespace(backends=[
        SimpleNamespace(name="llama_cpp", model_path=str(tmp_path / "missing.gguf")),
        SimpleNamespace(name="hf_api", model="x"),
        SimpleNamespace(name="openai", url="", model="x"),
    ])
    svc = LlmService(cfg)
    assert svc.capabilities() == []
    health = svc.health()
    assert "no backend configured" in health["note"] and "[[llm.backends]]" in health["note"]
    assert "missing.gguf" in health["note"] and "unknown llm backend 'hf_api'" in health["note"]
    assert [s["backend"] for s in health["skipped"]] == ["llama_cpp", "hf_api", "openai"]


def test_start_drops_a_backend_whose_model_cannot_load(tiny_gguf: Path, tmp_path: Path) -> None:
    broken = write_tiny_llama_gguf(tmp_path / "broken.gguf")
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # header intact, tensor data cut off
    cfg = SimpleNamespace(backends=[
        SimpleNamespace(name="llama_cpp", model_path=str(broken), model="broken"),
        SimpleNamespace(name="llama_cpp", model_path=str(tiny_gguf), model="tiny"),
    ])

    async def go() -> tuple[list[str], dict[str, Any], dict[str, Any]]:
        svc = LlmService(cfg)
        assert svc.capabilities()[0].params["model"] == "broken"
        await svc.start()
        try:
            res = await handler(svc, "llm.chat")(req(chat_body(max_tokens=2)))
            return [m["name"] for m in svc.capabilities()[0].params["models"]], svc.health(), res
        finally:
            await svc.stop()

    models, health, res = run(go())
    assert models == ["tiny"]
    assert health["skipped"][0]["backend"] == "llama_cpp" and "broken.gguf" in health["note"]
    assert res["meta"]["model"] == "tiny"


def test_health_reports_backends(tiny_gguf: Path) -> None:
    async def go() -> dict[str, Any]:
        svc = await started(tiny_gguf)
        try:
            await handler(svc, "llm.chat")(req(chat_body(max_tokens=2)))
            return svc.health()
        finally:
            await svc.stop()

    h = run(go())
    assert "note" not in h
    assert h["primary_model"] == "tiny" and h["served"] == 1 and h["in_flight"] == 0
    assert h["backends"][0]["loaded"] is True and h["backends"][0]["busy"] is False


def test_cancel_during_prompt_evaluation_stops_the_engine(
        tiny_gguf: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A long prompt takes a while to evaluate; the abort callback interrupts it."""

    async def go() -> None:
        b = LlamaCppBackend(tiny_gguf, model_name="tiny", ctx=BIG_CTX)
        await b.warm()
        try:
            it = b.complete(model="tiny", prompt="world " * 2000, max_tokens=5)  # ~10k tokens
            first = asyncio.create_task(anext(it))
            await _wait_busy(b, at_least_s=0.03)
            assert not first.done(), "prompt evaluation finished before the cancel"
            first.cancel()
            await asyncio.wait({first})
            assert first.cancelled()
            assert engine_idle(b), "llama.cpp was still evaluating the prompt after the cancel"
        finally:
            await b.close()

    with caplog.at_level(logging.WARNING, logger="hearthnet"):
        run(go())
    # the engine acknowledged the cancel: the caller did not give up waiting for it
    assert "did not acknowledge cancel" not in caplog.text


def test_one_generation_at_a_time_and_a_queued_one_cancels(tiny_gguf: Path) -> None:
    async def go() -> list[dict[str, Any]]:
        svc = await started(tiny_gguf, ctx=BIG_CTX)
        b = backend(svc)
        h = handler(svc, "llm.chat")
        try:
            # two at once are served one after the other, both completely
            both = await asyncio.gather(h(req(chat_body(max_tokens=30, seed=1))),
                                        h(req(chat_body(max_tokens=30, seed=1))))
            # a long one runs; a second one waits for the engine and is cancelled there
            long = asyncio.create_task(h(req(chat_body(max_tokens=1_000_000))))
            await _wait_busy(b, at_least_s=0.05)
            queued = asyncio.create_task(h(req(chat_body(max_tokens=5))))
            await asyncio.sleep(0.1)
            assert not queued.done()
            queued.cancel()
            await asyncio.wait({queued})
            assert queued.cancelled()
            # the queued one left the queue without waiting for the long one to finish
            assert b.busy and not long.done()
            assert len(b._active) == 1
            long.cancel()
            await asyncio.wait({long})
            assert long.cancelled() and engine_idle(b)
            return list(both)
        finally:
            await svc.stop()

    both = run(go())
    assert [r["meta"]["tokens_out"] for r in both] == [30, 30]
    assert both[0]["output"] == both[1]["output"]  # same seed, same text, no interference
