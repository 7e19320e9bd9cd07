"""A fake node on a unix socket, as a real node's local API is reached (`<run dir>/api.sock`,
api.json `{"socket": ...}`): tests/unit/cli/conftest.py's fake gateway app served on
one, for the fast `hearthnet status` path (hearthnet.fastcli), which only speaks unix
sockets. Import `env` and `unix_gateway` into a test module to use them."""
from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web

from tests.unit.cli.conftest import TOKEN, Env, FakeGateway, _app, env  # noqa: F401  (a fixture)


@pytest.fixture
def unix_gateway(env: Env) -> Iterator[FakeGateway]:  # noqa: F811
    gw = FakeGateway()
    sock_dir = tempfile.mkdtemp(prefix="hn-fc-", dir="/tmp")  # AF_UNIX paths must stay short
    path = f"{sock_dir}/api.sock"
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(_app(gw))
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.UnixSite(runner, path).start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="fake-unix-gateway", daemon=True)
    thread.start()
    assert started.wait(10), "fake gateway did not start"
    env.run.mkdir(parents=True, exist_ok=True)
    env.token_file.write_text(TOKEN + "\n")
    env.token_file.chmod(0o600)
    (env.run / "api.json").write_text(json.dumps({"socket": path}))
    try:
        yield gw
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        shutil.rmtree(sock_dir, ignore_errors=True)
