"""Local HTTP servers for `hearthnet model` tests (127.0.0.1, ephemeral ports, a thread
each; never the internet):

- `FakeOllama`: GET /api/tags (and the chat routes the llm worker does not need here);
- `FakeLlamaServer`: GET /v1/models and /health, like llama.cpp's llama-server;
- `FileServer`: serves files with HTTP Range support; `drop_after` makes the first
  `drops` responses end the connection after that many bytes (an interrupted download).

    with FileServer({"m.gguf": data}, drop_after=1000) as srv:
        url = srv.url + "/m.gguf"
"""
from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

from aiohttp import web

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class _Server:
    """An aiohttp app on 127.0.0.1:<ephemeral> in its own thread and loop."""

    def __init__(self) -> None:
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.requests: list[dict[str, Any]] = []

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "_Server":
        started = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            app = web.Application()
            self.routes(app)
            self._runner = web.AppRunner(app)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            started.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("test HTTP server did not start")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


class FakeOllama(_Server):
    def __init__(self, models: tuple[str, ...] = ("qwen2.5:0.5b", "llama3.2:1b")) -> None:
        super().__init__()
        self.models = models

    def routes(self, app: web.Application) -> None:
        async def tags(request: web.Request) -> web.Response:
            self.requests.append({"path": request.path})
            return web.json_response({"models": [{"name": m, "model": m} for m in self.models]})

        app.router.add_get("/api/tags", tags)


class FakeLlamaServer(_Server):
    def __init__(self, models: tuple[str, ...] = ("tiny.gguf",)) -> None:
        super().__init__()
        self.models = models

    def routes(self, app: web.Application) -> None:
        async def models(request: web.Request) -> web.Response:
            return web.json_response({"object": "list", "data": [{"id": m, "object": "model"}
                                                                 for m in self.models]})

        async def health(request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        app.router.add_get("/v1/models", models)
        app.router.add_get("/health", health)


class FileServer(_Server):
    def __init__(self, files: dict[str, bytes], *, drop_after: int | None = None, drops: int = 1,
                 honour_range: bool = True) -> None:
        super().__init__()
        self.files = files
        self.drop_after = drop_after
        self.drops_left = drops if drop_after is not None else 0
        self.honour_range = honour_range

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/{name}", self._get)

    async def _get(self, request: web.Request) -> web.StreamResponse:
        data = self.files.get(request.match_info["name"])
        rng = request.headers.get("Range")
        self.requests.append({"path": request.path, "range": rng})
        if data is None:
            raise web.HTTPNotFound()
        start = 0
        m = _RANGE.match(rng or "") if self.honour_range else None
        if m:
            start = int(m.group(1))
            if start >= len(data):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
        body = data[start:]
        resp = web.StreamResponse(status=206 if m else 200)
        resp.content_length = len(body)
        if m:
            resp.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        resp.headers["Accept-Ranges"] = "bytes"
        await resp.prepare(request)
        if self.drops_left > 0:
            self.drops_left -= 1
            await resp.write(body[: self.drop_after])
            await asyncio.sleep(0.05)
            request.transport.close()  # type: ignore[union-attr]  # mid-body: the client sees a short read
            return resp
        await resp.write(body)
        await resp.write_eof()
        return resp
