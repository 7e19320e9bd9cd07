"""The native Ollama backend against a tiny aiohttp stand-in of Ollama's NDJSON API
(an isolating mock for this optional backend)."""
from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from hearthnet.errors import HearthNetError
from hearthnet.bus.service import Request
from hearthnet.services.llm.backends.base import collect
from hearthnet.services.llm.backends.ollama import OllamaBackend
from hearthnet.services.llm.service import LlmService


class FakeOllama:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.disconnected = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> "FakeOllama":
        app = web.Application()
        app.router.add_post("/api/chat", self.chat)
        app.router.add_post("/api/generate", self.generate)
        app.router.add_get("/api/tags", self.tags)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def tags(self, request: web.Request) -> web.Response:
        return web.json_response({"models": [{"name": "llama3.2"}]})

    async def _stream(self, request: web.Request, key: str) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        if body["model"] == "missing":
            return web.json_response({"error": f"model '{body['model']}' not found"}, status=404)
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)

        def line(doc: dict[str, Any]) -> bytes:
            return (json.dumps(doc) + "\n").encode()

        if body["model"] == "erroring":
            await resp.write(line({"error": "out of memory"}))
            return resp
        n = body["options"]["num_predict"]
        try:
            for i in range(n):
                piece = {"message": {"role": "assistant", "content": f"w{i} "}} if key == "chat" \
                    else {"response": f"w{i} "}
                await resp.write(line({"model": body["model"], "done": False, **piece}))
                if body["model"] == "slow":
                    await asyncio.sleep(0.01)
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnected.set()
            raise
        await resp.write(line({"model": body["model"], "done": True, "done_reason": "length",
                               "prompt_eval_count": 11, "eval_count": n}))
        return resp

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, "chat")

    async def generate(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, "generate")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_chat_and_generate_stream_ndjson() -> None:
    async def go() -> tuple[list, Any, list[dict[str, Any]]]:
        fake = await FakeOllama().start()
        b = OllamaBackend(fake.url + "/api", "llama3.2", ctx=2048)
        try:
            await b.warm()
            toks = [t async for t in b.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}],
                                            max_tokens=3, temperature=0.2, seed=4, stop=["\n"])]
            gen = await collect(b.complete(model="llama3.2", prompt="once", max_tokens=2))
            return toks, gen, fake.requests
        finally:
            await b.close()
            await fake.stop()

    toks, gen, requests = run(go())
    assert [t.text for t in toks[:-1]] == ["w0 ", "w1 ", "w2 "]
    last = toks[-1]
    assert last.stop and last.usage.tokens_in == 11 and last.usage.tokens_out == 3
    assert last.usage.stop_reason == "max_tokens" and last.usage.exact
    assert gen.text == "w0 w1 " and gen.tokens_out == 2
    opts = requests[0]["options"]
    assert opts == {"num_predict": 3, "temperature": 0.2, "top_p": 0.95, "stop": ["\n"],
                    "seed": 4, "num_ctx": 2048}
    assert requests[1]["prompt"] == "once" and requests[0]["stream"] is True


def test_ollama_through_the_service() -> None:
    async def go() -> list[tuple[str, dict[str, Any]]]:
        fake = await FakeOllama().start()
        svc = LlmService(SimpleNamespace(backends=[
            SimpleNamespace(name="ollama", url=fake.url, model="llama3.2")]))
        try:
            await svc.start()
            h = {c.name: c.handler for c in svc.capabilities()}["llm.chat"]
            gen = await h(Request("llm.chat", "1.0", {
                "input": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}},
                stream=True))
            return [f async for f in gen]
        finally:
            await svc.stop()
            await fake.stop()

    frames = run(go())
    assert [e for e, _ in frames] == ["token"] * 4 + ["done"]
    assert frames[-1][1]["tokens_out"] == 4 and frames[-1][1]["stop_reason"] == "max_tokens"


def test_errors_map_to_contract_codes() -> None:
    async def go() -> tuple[HearthNetError, HearthNetError]:
        fake = await FakeOllama().start()
        b = OllamaBackend(fake.url, None, models=("missing", "erroring"))
        msgs = [{"role": "user", "content": "x"}]
        try:
            with pytest.raises(HearthNetError) as missing:
                await collect(b.chat(model="missing", messages=msgs))
            with pytest.raises(HearthNetError) as erroring:
                await collect(b.chat(model="erroring", messages=msgs))
            return missing.value, erroring.value
        finally:
            await b.close()
            await fake.stop()

    missing, erroring = run(go())
    assert missing.code == "internal_error" and "not found" in missing.message
    assert erroring.code == "internal_error" and "out of memory" in erroring.message


def test_closing_the_stream_drops_the_connection() -> None:
    async def go() -> None:
        fake = await FakeOllama().start()
        b = OllamaBackend(fake.url, "slow")
        try:
            it = b.chat(model="slow", messages=[{"role": "user", "content": "x"}], max_tokens=10_000)
            n = 0
            async for _ in it:
                n += 1
                if n == 5:
                    break
            await it.aclose()
            # the server sees the connection go (a guard against a hang, not a time bound;
            # the speed is bench/llm_cancel.py's business)
            await asyncio.wait_for(fake.disconnected.wait(), 10)
        finally:
            await b.close()
            await fake.stop()

    run(go())


def test_url_normalisation_and_model_required() -> None:
    assert OllamaBackend("http://h:11434/api/", "m").base_url == "http://h:11434"
    assert OllamaBackend("http://h:11434/v1", "m").base_url == "http://h:11434"
    assert OllamaBackend(None, "m").base_url == "http://127.0.0.1:11434"
    with pytest.raises(ValueError, match="needs `model`"):
        OllamaBackend("http://h:11434", None)
