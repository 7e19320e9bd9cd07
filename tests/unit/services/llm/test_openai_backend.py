"""The OpenAI-compatible backend against a real `python -m llama_cpp.server` running the
tiny GGUF (fixture `llama_server`), plus the error mapping."""
from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from hearthnet.errors import HearthNetError
from hearthnet.bus.service import Request
from hearthnet.services.llm.backends._http import error_for_status, requires_internet, retry_after_ms
from hearthnet.services.llm.backends.base import collect
from hearthnet.services.llm.backends.openai import OpenAiBackend, normalise_base_url
from hearthnet.services.llm.service import LlmService
from hearthnet.testing.waiting import wait_for_async

from .conftest import LlamaServer

# How fast a cancel reaches the server is measured by bench/llm_cancel.py; these tests
# assert that it does: llama_cpp.server logs this line when it stops a generation
# because the client went away.
SERVER_STOPPED = "Disconnected from client"


def server_stops(server: LlamaServer) -> int:
    return server.log.read_text(errors="replace").count(SERVER_STOPPED)


async def server_stopped_one_more(server: LlamaServer, before: int) -> None:
    """The server noticed the disconnect and abandoned the generation (a guard against a
    hang, not a time bound)."""
    await wait_for_async(lambda: server_stops(server) > before, 10, 0.01,
                         message=lambda: f"llama_cpp.server stopping the generation:\n"
                                         f"{server.log.read_text(errors='replace')[-2000:]}")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def openai_service(server: LlamaServer, **extra: Any) -> LlmService:
    # the bare host:port form: the backend adds /v1
    return LlmService(SimpleNamespace(backends=[
        SimpleNamespace(name="openai", url=server.url, model=server.model, **extra)]))


def handler(svc: LlmService, name: str):
    return {c.name: c.handler for c in svc.capabilities()}[name]


def chat_req(max_tokens: int, *, stream: bool, **extra: Any) -> Request:
    return Request("llm.chat", "1.0", {
        "params": {"model": "tiny"},
        "input": {"messages": [{"role": "user", "content": "hello"}], "max_tokens": max_tokens,
                  **extra},
    }, stream=stream)


def test_stream_through_the_service(llama_server: LlamaServer) -> None:
    async def go() -> list[tuple[str, dict[str, Any]]]:
        svc = openai_service(llama_server)
        await svc.start()
        try:
            gen = await handler(svc, "llm.chat")(chat_req(16, stream=True, seed=3))
            return [f async for f in gen]
        finally:
            await svc.stop()

    frames = run(go())
    events = [e for e, _ in frames]
    assert events[-1] == "done" and events.count("done") == 1
    assert len(events) >= 2 and set(events[:-1]) == {"token"}
    assert all(isinstance(d["text"], str) and d["text"] for _, d in frames[:-1])
    done = frames[-1][1]
    assert done["tokens_out"] > 0 and done["stop_reason"] == "max_tokens"
    assert isinstance(done["ms"], int) and done["model"] == "tiny"


def test_non_stream_chat_and_complete_through_the_service(llama_server: LlamaServer) -> None:
    async def go() -> tuple[dict, dict]:
        svc = openai_service(llama_server)
        try:
            chat = await handler(svc, "llm.chat")(chat_req(8, stream=False, seed=1))
            comp = await handler(svc, "llm.complete")(Request("llm.complete", "1.0", {
                "input": {"prompt": "the world", "max_tokens": 8, "seed": 1}}))
            return chat, comp
        finally:
            await svc.stop()

    chat, comp = run(go())
    assert chat["output"]["message"]["role"] == "assistant"
    assert isinstance(chat["output"]["message"]["content"], str)
    assert set(chat["meta"]) == {"model", "tokens_in", "tokens_out", "stop_reason", "ms"}
    assert chat["meta"]["model"] == "tiny" and chat["meta"]["tokens_out"] > 0
    assert chat["meta"]["stop_reason"] == "max_tokens"
    assert isinstance(comp["output"]["text"], str) and comp["output"]["text"]
    assert comp["meta"]["tokens_in"] > 0 and comp["meta"]["tokens_out"] > 0


def test_seeded_requests_are_deterministic(llama_server: LlamaServer) -> None:
    async def go() -> tuple[str, str]:
        b = OpenAiBackend(llama_server.url + "/v1/", "tiny")
        try:
            a = await collect(b.complete(model="tiny", prompt="the", max_tokens=20, seed=9))
            c = await collect(b.complete(model="tiny", prompt="the", max_tokens=20, seed=9))
            return a.text, c.text
        finally:
            await b.close()

    a, c = run(go())
    assert a == c and a


def test_closing_the_stream_stops_the_server_generation(llama_server: LlamaServer) -> None:
    async def go() -> None:
        svc = openai_service(llama_server)
        try:
            h = handler(svc, "llm.complete")
            before = server_stops(llama_server)
            gen = await h(Request("llm.complete", "1.0", {
                "input": {"prompt": "the", "max_tokens": 10_000}}, stream=True))
            n = 0
            async for event, _ in gen:
                n += 1
                if n == 20:
                    break
            await gen.aclose()
            await server_stopped_one_more(llama_server, before)
            # and the server is free for the next request
            res = await h(Request("llm.complete", "1.0", {"input": {"prompt": "the", "max_tokens": 3}}))
            assert res["meta"]["tokens_out"] > 0
            assert server_stops(llama_server) == before + 1
        finally:
            await svc.stop()

    run(go())


def test_cancelling_the_task_closes_the_upstream(llama_server: LlamaServer) -> None:
    async def go() -> None:
        svc = openai_service(llama_server)
        try:
            h = handler(svc, "llm.chat")
            before = server_stops(llama_server)
            task = asyncio.create_task(h(chat_req(10_000, stream=False)))
            await asyncio.sleep(0.3)
            assert not task.done()
            task.cancel()
            await asyncio.wait({task})
            assert task.cancelled()
            await server_stopped_one_more(llama_server, before)
            res = await h(chat_req(3, stream=False))
            assert res["meta"]["tokens_out"] > 0
        finally:
            await svc.stop()

    run(go())


def test_cancel_event_ends_the_stream_with_cancelled(llama_server: LlamaServer) -> None:
    async def go() -> Any:
        b = OpenAiBackend(llama_server.url, "tiny")
        ev = asyncio.Event()
        try:
            before = server_stops(llama_server)
            n = 0
            last = None
            async for tok in b.chat(model="tiny", messages=[{"role": "user", "content": "x"}],
                                    max_tokens=10_000, cancel=ev):
                assert last is None, "a token after the final one"
                if tok.stop:
                    last = tok
                    continue
                n += 1
                if n == 10:
                    ev.set()
            assert last is not None, "no final token"
            await server_stopped_one_more(llama_server, before)  # the upstream was dropped
            return last
        finally:
            await b.close()

    last = run(go())
    assert last.usage.stop_reason == "cancelled"
    assert last.usage.exact is False  # llama_cpp.server does not report streamed usage


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_is_internal_error_naming_the_url() -> None:
    port = _closed_port()

    async def go() -> HearthNetError:
        b = OpenAiBackend(f"http://127.0.0.1:{port}", "m")
        try:
            with pytest.raises(HearthNetError) as info:
                await collect(b.chat(model="m", messages=[{"role": "user", "content": "x"}]))
            return info.value
        finally:
            await b.close()

    err = run(go())
    assert err.code == "internal_error"
    assert f"backend unreachable at http://127.0.0.1:{port}/v1" in err.message


def test_missing_api_key_env_is_reported_by_name(monkeypatch: pytest.MonkeyPatch,
                                                 llama_server: LlamaServer) -> None:
    monkeypatch.delenv("HEARTHNET_TEST_KEY", raising=False)

    async def go() -> tuple[HearthNetError, str]:
        b = OpenAiBackend(llama_server.url, "tiny", api_key_env="HEARTHNET_TEST_KEY")
        try:
            with pytest.raises(HearthNetError) as info:
                await collect(b.chat(model="tiny", messages=[{"role": "user", "content": "x"}]))
            monkeypatch.setenv("HEARTHNET_TEST_KEY", "sk-secret-value")  # read at call time
            ok = await collect(b.chat(model="tiny", messages=[{"role": "user", "content": "x"}],
                                      max_tokens=2))
            return info.value, ok.stop_reason
        finally:
            await b.close()

    err, reason = run(go())
    assert err.code == "internal_error" and "HEARTHNET_TEST_KEY" in err.message
    assert reason == "max_tokens"


# --------------------------------------------------------------------------- error mapping


async def _fake(handler_fn) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler_fn)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def test_http_status_mapping_through_the_backend() -> None:
    seen: list[dict[str, Any]] = []

    async def fake(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append({"auth": request.headers.get("Authorization"), **body})
        model = body["model"]
        if model == "busy":
            return web.json_response({"error": {"message": "slow down"}}, status=429,
                                     headers={"Retry-After": "2"})
        if model == "broken":
            return web.json_response({"error": {"message": "boom"}}, status=503)
        if model == "strict" and "stream_options" in body:
            return web.json_response({"error": {"message": "unknown field stream_options"}},
                                     status=400)
        if model == "toolong":
            return web.json_response({"error": {"message": "context length exceeded"}}, status=400)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for piece in ("Hel", "lo"):
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            await resp.write(f"data: {__import__('json').dumps(chunk)}\n\n".encode())
        await resp.write(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
        if "stream_options" in body:
            await resp.write(b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2}}\n\n')
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def go() -> dict[str, Any]:
        runner, url = await _fake(fake)
        b = OpenAiBackend(url + "/v1/chat/completions", None,
                          models=("ok", "busy", "broken", "strict", "toolong"))
        msgs = [{"role": "user", "content": "x"}]
        out: dict[str, Any] = {}
        try:
            for model in ("busy", "broken", "toolong"):
                with pytest.raises(HearthNetError) as info:
                    await collect(b.chat(model=model, messages=msgs))
                out[model] = info.value
            out["ok"] = await collect(b.chat(model="ok", messages=msgs))
            out["strict"] = await collect(b.chat(model="strict", messages=msgs))
            out["strict_again"] = await collect(b.chat(model="strict", messages=msgs))
        finally:
            await b.close()
            await runner.cleanup()
        return out

    out = run(go())
    assert out["busy"].code == "rate_limited" and out["busy"].details["retry_after_ms"] == 2000
    assert out["broken"].code == "internal_error" and "503" in out["broken"].message
    assert out["toolong"].code == "bad_request" and "context length" in out["toolong"].message
    ok = out["ok"]
    assert ok.text == "Hello" and (ok.tokens_in, ok.tokens_out) == (7, 2) and ok.stop_reason == "end"
    # a server that rejects stream_options is retried without it, and remembered
    assert out["strict"].text == "Hello" and out["strict_again"].text == "Hello"
    strict_calls = [s for s in seen if s["model"] == "strict"]
    assert ["stream_options" in s for s in strict_calls] == [True, False, False]
    assert all(s["auth"] is None for s in seen)


def test_error_for_status_and_helpers() -> None:
    e = error_for_status(429, '{"error":"x"}', {"Retry-After": "1.5"}, "srv")
    assert e.code == "rate_limited" and e.details["retry_after_ms"] == 1500
    assert error_for_status(500, "oops", {}, "srv").code == "internal_error"
    assert error_for_status(502, "", {}, "srv").code == "internal_error"
    assert error_for_status(401, "", {}, "srv").code == "internal_error"
    assert error_for_status(422, "{}", {}, "srv").code == "bad_request"
    assert retry_after_ms(None) is None and retry_after_ms("0") == 0
    assert retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # a past date
    assert normalise_base_url("http://h:8080") == "http://h:8080/v1"
    assert normalise_base_url("http://h:8080/v1/") == "http://h:8080/v1"
    assert normalise_base_url("http://h:8080/v1/chat/completions") == "http://h:8080/v1"
    assert normalise_base_url("https://api.example.com/openai/v1") == "https://api.example.com/openai/v1"
    with pytest.raises(ValueError):
        normalise_base_url("localhost:8080")
    assert not requires_internet("http://127.0.0.1:8080")
    assert not requires_internet("http://10.0.0.4:1234")
    assert not requires_internet("http://gpu-box:1234")
    assert not requires_internet("http://nas.local:1234")
    assert requires_internet("https://api.openai.com/v1")
    assert requires_internet("http://8.8.8.8/v1")
