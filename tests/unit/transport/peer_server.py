"""A tiny HTTPS peer for the transport tests: a real aiohttp server on 127.0.0.1 with
`server_ssl_context`, whose handlers use `verify_request`. It stands in for a remote node;
it is not the product gateway."""
from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from aiohttp import web

from hearthnet.errors import HearthNetError, http_status_for
from hearthnet.identity import manifest as idmanifest
from hearthnet.identity.keys import KeyPair
from hearthnet.transport import signing
from hearthnet.transport.sse import format_frame
from hearthnet.transport.tls import TlsIdentity, add_tls_fields, ensure_tls_identity, server_ssl_context

HARDWARE = {"gpu": None, "vram_gb": 0.0, "ram_gb": 8.0, "cpu_cores": 4, "disk_free_gb": 10.0}
LOAD = {"cpu": 0.0, "vram_used_gb": 0.0, "in_flight_total": 0}


@dataclass
class TestPeer:
    kp: KeyPair
    community_id: str
    identity: TlsIdentity
    now: Callable[[], datetime | None] = lambda: None
    replay: signing.ReplayCache = field(default_factory=signing.ReplayCache)
    port: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)  # verified requests
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    frames_sent: int = 0
    bad_response_signature: bool = False
    manifest_fingerprint: str | None = None  # override what /manifest declares
    manifest_kp: KeyPair | None = None  # serve someone else's manifest

    __test__ = False  # not a pytest class

    def manifest(self) -> dict[str, Any]:
        kp = self.manifest_kp or self.kp
        m = idmanifest.build_node_manifest(
            kp, display_name="peer", community_id=self.community_id, profile="hearth",
            endpoints=[{"transport": "https", "host": "127.0.0.1", "port": self.port}],
            hardware=HARDWARE, capabilities=[], uptime_seconds=1, load=LOAD)
        m = add_tls_fields(m, self.identity, kp)
        if self.manifest_fingerprint is not None:
            m = kp.sign({**m, "tls_fingerprint": self.manifest_fingerprint})
        return m

    # ---- handlers ----------------------------------------------------------------------

    async def get_manifest(self, request: web.Request) -> web.Response:
        return web.json_response(self.manifest())

    def _verify(self, request: web.Request, raw: bytes, expect: str | None = None) -> str:
        caller = signing.verify_request(request.headers, raw, replay=self.replay, now=self.now(),
                                        self_node_id=self.kp.node_id_full,
                                        community_id=self.community_id, expect_capability=expect)
        body = json.loads(raw) if raw else None
        self.seen.append({"caller": caller, "path": request.path, "body": body,
                          "capability": request.headers[signing.H_CAPABILITY],
                          "conn": request.transport.get_extra_info("peername")})
        return caller

    def _signed_json(self, request: web.Request, body: Any, status: int = 200) -> web.Response:
        rid = request.headers[signing.H_REQUEST_ID]
        headers = signing.sign_response(self.kp, rid, status, body)
        if self.bad_response_signature:
            headers = signing.sign_response(self.kp, rid, status, {"forged": True})
        return web.json_response(body, status=status, headers=headers)

    async def call(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        caller = self._verify(request, raw)
        body = json.loads(raw)
        cap = request.headers[signing.H_CAPABILITY]
        if cap == "experimental.missing":
            raise HearthNetError("not_found", "no such capability", alt_nodes=["ed25519:x"])
        if cap == "experimental.slow":
            await asyncio.sleep(5)
        if "text/event-stream" in request.headers.get("Accept", ""):
            return await self._stream(request, body)
        return self._signed_json(request, {"output": {"echo": body, "caller": caller}, "meta": {"ms": 1}})

    async def _stream(self, request: web.Request, body: Any) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        mode = body.get("mode", "pieces")
        try:
            if mode == "pieces":  # every frame dribbles out a few bytes at a time
                for i, text in enumerate(["Hé", "llo", " wörld"]):
                    await self._dribble(resp, format_frame("token", {"text": text, "i": i}))
                await self._dribble(resp, b": keep-alive\n\n" + format_frame("done", {"tokens": 3}))
            elif mode == "no_terminal":
                await resp.write(format_frame("token", {"text": "x"}))
            else:  # "forever": until the client goes away
                while True:
                    await resp.write(format_frame("token", {"text": "t"}))
                    self.frames_sent += 1
                    await asyncio.sleep(0.02)
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnected.set()
            raise
        return resp

    @staticmethod
    async def _dribble(resp: web.StreamResponse, data: bytes) -> None:
        for i in range(0, len(data), 3):
            await resp.write(data[i:i + 3])
            await asyncio.sleep(0.001)

    async def heads(self, request: web.Request) -> web.Response:
        self._verify(request, await request.read(), expect=signing.SYNC_HEADS)
        return self._signed_json(request, {"community_id": self.community_id, "head": 7})

    async def events(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self._verify(request, raw, expect=signing.SYNC_EVENTS)
        body = json.loads(raw)
        return self._signed_json(request, {"accepted": len(body["events"]), "rejected": 0,
                                           "rejected_reasons": [], "new_head_lamport": 9})

    @web.middleware
    async def errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except HearthNetError as exc:
            return web.json_response(exc.to_wire(), status=http_status_for(exc.code))


@asynccontextmanager
async def running_peer(tls_dir: Path, kp: KeyPair, community_id: str, port: int = 0) -> AsyncIterator[TestPeer]:
    peer = TestPeer(kp, community_id, ensure_tls_identity(kp, tls_dir, "127.0.0.1"))
    app = web.Application(middlewares=[peer.errors])
    app.router.add_get("/manifest", peer.get_manifest)
    app.router.add_post("/bus/v1/call", peer.call)
    app.router.add_get("/sync/v1/heads", peer.heads)
    app.router.add_post("/sync/v1/events", peer.events)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_ssl_context(peer.identity))
    await site.start()
    peer.port = runner.addresses[0][1]
    try:
        yield peer
    finally:
        await runner.cleanup()
