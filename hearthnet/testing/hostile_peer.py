"""A hostile peer for trust-boundary tests: a real HTTPS server (its own fresh device key,
its own certificate) that speaks the wire contract well enough to look like a node — a
manifest signed by its own key that claims whatever community it is told, advertising
whatever capabilities it is told — and records every request a node sends it. It also
sends signed requests of its own through the product's PeerClient.

It runs its event loop in a thread so synchronous tests (driving real nodes through the
CLI) can use it; loopback only.
"""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Coroutine, TypeVar

from aiohttp import web

from hearthnet.identity import keys as idkeys
from hearthnet.identity import manifest as idmanifest
from hearthnet.transport.client import PeerClient
from hearthnet.transport.pinning import PinStore
from hearthnet.transport.tls import add_tls_fields, ensure_tls_identity, server_ssl_context

T = TypeVar("T")
HARDWARE = {"gpu": None, "vram_gb": 0.0, "ram_gb": 8.0, "cpu_cores": 4, "disk_free_gb": 10.0}
LOAD = {"cpu": 0.0, "vram_used_gb": 0.0, "in_flight_total": 0}


def capability(name: str, max_concurrent: Any = 4) -> dict[str, Any]:
    return {"name": name, "version": "1.0", "stability": "stable", "schema_hash": "blake3:" + "0" * 64,
            "params": {}, "max_concurrent": max_concurrent}


class HostilePeer:
    def __init__(self, root: Path, community_id: str, capabilities: list[dict[str, Any]] | None = None,
                 kp: idkeys.KeyPair | None = None) -> None:
        self.root = root
        self.kp = kp or idkeys.generate()
        self.community_id = community_id
        self.capabilities = capabilities if capabilities is not None else []
        self.identity = ensure_tls_identity(self.kp, root / "tls", "127.0.0.1")
        self.requests: list[tuple[str, str]] = []  # (method, path) of everything a node asked
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._client: PeerClient | None = None

    # ---- lifecycle --------------------------------------------------------------------

    def __enter__(self) -> "HostilePeer":
        self._thread.start()
        self.run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        fut: Future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=server_ssl_context(self.identity))
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._client = PeerClient(self.kp, self.community_id, PinStore(self.root / "known_peers.json"))

    async def _stop(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- serving ----------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        m = idmanifest.build_node_manifest(
            self.kp, display_name="stranger", community_id=self.community_id, profile="hearth",
            endpoints=[{"transport": "https", "host": "127.0.0.1", "port": self.port}],
            hardware=HARDWARE, capabilities=self.capabilities, uptime_seconds=1, load=LOAD)
        return add_tls_fields(m, self.identity, self.kp)

    async def _any(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path))
        if request.path == "/manifest":
            return web.json_response(self.manifest())
        # Whatever a node asks of us beyond the manifest is a finding for the test.
        return web.json_response({"ids": [], "events": [], "head": 0, "count": 0,
                                  "output": {"members": []}, "meta": {}})

    def asked(self, prefix: str) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[1].startswith(prefix)]

    # ---- requests of our own ----------------------------------------------------------

    def call(self, node_id: str, port: int, capability_name: str, body: Any) -> dict[str, Any]:
        """A signed capability call to a node; raises the node's error (PeerCallError)."""
        assert self._client is not None
        return self.run(self._client.call(node_id, ("127.0.0.1", port), capability_name, "1.0", body,
                                          timeout=10))

    def sync_heads(self, node_id: str, port: int) -> dict[str, Any]:
        from hearthnet.transport.signing import SYNC_HEADS

        assert self._client is not None
        return self.run(self._client.get_signed(node_id, ("127.0.0.1", port), "/sync/v1/heads", SYNC_HEADS))


def refused(fn: Any) -> str:
    """The error code a peer call made by `fn` was refused with, or "answered"."""
    from hearthnet.transport.client import PeerCallError

    try:
        fn()
    except PeerCallError as exc:
        return exc.code
    return "answered"
