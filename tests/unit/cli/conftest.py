"""Fixtures for CLI unit tests: an isolated XDG home per test, and a fake gateway.

The fake gateway is a small aiohttp app in a thread on 127.0.0.1 serving the local API
shapes the CLI reads. It isolates the CLI from the real node; the integration tests
run the real one.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

TOKEN = "test-token-0123456789"
FULL_ID = "ed25519:" + "A" * 42 + "Q"  # 32 zero-ish bytes, base64url without padding


@dataclass
class Env:
    root: Path
    data: Path
    config: Path
    state: Path
    cache: Path
    run: Path

    @property
    def log_dir(self) -> Path:
        return self.state / "hearthnet" / "log"

    @property
    def token_file(self) -> Path:
        return self.run / "api.token"

    @property
    def config_file(self) -> Path:
        return self.config / "hearthnet" / "config.toml"


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    for name in list(os.environ):
        if name.startswith("HEARTHNET_"):
            monkeypatch.delenv(name)
    e = Env(tmp_path, tmp_path / "data", tmp_path / "config", tmp_path / "state", tmp_path / "cache", tmp_path / "run")
    monkeypatch.setenv("XDG_DATA_HOME", str(e.data))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(e.config))
    monkeypatch.setenv("XDG_STATE_HOME", str(e.state))
    monkeypatch.setenv("XDG_CACHE_HOME", str(e.cache))
    monkeypatch.setenv("HEARTHNET_RUN_DIR", str(e.run))
    # Never collide with a real node on this host.
    monkeypatch.setenv("HEARTHNET_TRANSPORT_PORT", str(free_port()))
    # Network rule: doctor's mdns_socket/udp_multicast join groups on loopback only.
    monkeypatch.setenv("HEARTHNET_DISCOVERY_INTERFACES", "lo")
    # init/doctor look for an LLM server on this machine's usual ports: not in tests.
    monkeypatch.setenv("HEARTHNET_MODELS_DETECT_OLLAMA_URL", "")
    monkeypatch.setenv("HEARTHNET_MODELS_DETECT_LLAMA_CPP_URL", "")
    return e


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str, input: str | None = None) -> Any:
    from hearthnet.cli import main

    return runner.invoke(main, list(args), input=input, catch_exceptions=False)


def json_result(text: str, *, ok: bool = True) -> Any:
    """A `--json` result document without its envelope (`ok`, `schema_version`), which is
    checked here: the command's own keys, as the tests compare them."""
    doc = json.loads(text)
    assert doc.pop("ok") is ok and doc.pop("schema_version") == 1, doc
    return doc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- gateway


def worker(name: str, state: str = "RUNNING", **kw: Any) -> dict[str, Any]:
    w = {
        "name": name, "program": name.rsplit("_", 1)[0], "state": state, "healthy": state == "RUNNING",
        "pid": 4242 if state == "RUNNING" else None, "uptime_seconds": 3725, "restarts": 0,
        "last_heartbeat_ms_ago": 420 if state == "RUNNING" else None, "in_flight": 0, "served": 12,
        "errors": 0, "capabilities": [], "note": None, "log_tail": [],
    }
    w.update(kw)
    return w


def capability(name: str, *, local: bool = True, node_id: str = FULL_ID, **kw: Any) -> dict[str, Any]:
    c = {
        "name": name, "version": "1.0", "stability": "stable", "node_id": node_id, "local": local,
        "params": {"model": "qwen2.5-7b-instruct"} if name.startswith("llm.") else {},
        "health": "ok", "p50_ms": 12.5, "p99_ms": 80.0, "success_rate": 1.0, "in_flight": 0,
        "max_concurrent": 4, "providers": 1,
    }
    c.update(kw)
    return c


def status_doc(workers: list[dict[str, Any]], caps: list[dict[str, Any]], notes: list[str] | None = None) -> dict[str, Any]:
    return {
        "node": {
            "node_id": FULL_ID, "node_id_short": "ed25519:AAAA-AAAA-AAAA-AAAA", "display_name": "kitchen",
            "profile": "hearth", "version": "0.1.0", "contract_version": "1.0", "uptime_seconds": 3725,
        },
        "community": {"community_id": FULL_ID, "name": "Maple Street", "member_count": 3},
        "workers": workers,
        "capabilities": caps,
        "in_flight": 1,
        "notes": notes or [],
    }


CallHandler = Callable[[web.Request, dict[str, Any]], Any]


@dataclass
class FakeGateway:
    port: int = 0
    token: str = TOKEN
    workers: list[dict[str, Any]] = field(default_factory=lambda: [worker("broker"), worker("llm_00")])
    caps: list[dict[str, Any]] = field(default_factory=lambda: [
        capability("llm.chat"), capability("embed.text", local=False, node_id="ed25519:" + "B" * 42 + "Q"),
    ])
    traces: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    status_override: Any = None  # raw bytes/str to send instead of the status doc
    on_call: CallHandler | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)

    def status(self) -> dict[str, Any]:
        return status_doc(self.workers, [c for c in self.caps if c.get("local")], self.notes)


def _authorised(gw: FakeGateway, request: web.Request) -> web.Response | None:
    if request.headers.get("Authorization") != f"Bearer {gw.token}":
        return web.json_response({"error": "unauthorized", "message": "bad or missing API token"}, status=401)
    return None


def _app(gw: FakeGateway) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def api(request: web.Request) -> web.Response:
        gw.requests.append({"path": request.path, "query": dict(request.query), "headers": dict(request.headers)})
        denied = _authorised(gw, request)
        if denied is not None:
            return denied
        what = request.match_info["what"]
        if what == "status":
            if gw.status_override is not None:
                return web.Response(text=gw.status_override, content_type="application/json")
            return web.json_response(gw.status())
        if what == "workers":
            return web.json_response({"workers": gw.workers})
        if what == "capabilities":
            return web.json_response({"capabilities": gw.caps})
        if what == "traces":
            n = int(request.query.get("n", "100"))
            cap = request.query.get("capability")
            traces = [t for t in gw.traces if cap is None or t["capability"] == cap]
            return web.json_response({"traces": traces[-n:]})
        return web.json_response({"error": "not_found", "message": f"no route {request.path}"}, status=404)

    async def call(request: web.Request) -> Any:
        body = await request.json()
        gw.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        denied = _authorised(gw, request)
        if denied is not None:
            return denied
        assert gw.on_call is not None, "test did not set on_call"
        return await gw.on_call(request, body)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/api/v1/{what}", api)
    app.router.add_post("/bus/v1/call", call)
    return app


async def sse(request: web.Request, frames: list[tuple[str, dict[str, Any]]], *,
              gate: threading.Event | None = None, gate_after: int = 1) -> web.StreamResponse:
    """Stream frames; with `gate`, pause after `gate_after` frames until the test sets it."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    for i, (event, data) in enumerate(frames):
        if gate is not None and i == gate_after:
            while not gate.is_set():
                await asyncio.sleep(0.01)
        await resp.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
    await resp.write_eof()
    return resp


@pytest.fixture
def gateway(env: Env, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGateway]:
    gw = FakeGateway()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    gw.port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    started = threading.Event()
    runner_box: dict[str, web.AppRunner] = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(_app(gw))
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.SockSite(runner, sock).start())
        runner_box["r"] = runner
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="fake-gateway", daemon=True)
    thread.start()
    assert started.wait(10), "fake gateway did not start"
    monkeypatch.setenv("HEARTHNET_TRANSPORT_PORT", str(gw.port))
    monkeypatch.setenv("HEARTHNET_TRANSPORT_HOST", "127.0.0.1")
    env.run.mkdir(parents=True, exist_ok=True)
    env.token_file.write_text(TOKEN + "\n")
    env.token_file.chmod(0o600)
    (env.run / "api.json").write_text(json.dumps({"host": "127.0.0.1", "port": gw.port}))
    try:
        yield gw
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        sock.close()
