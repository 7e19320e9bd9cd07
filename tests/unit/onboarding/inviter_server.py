"""A stand-in for the inviter's node, for the join tests: a real HTTPS server (TLS 1.3,
the device key's certificate) on 127.0.0.1 in a thread, serving the routes a redeem uses
(`/manifest`, `/community/manifest`, the signed `/sync/v1/ids|pull|events|admit`) from a real
EventLog, with knobs to make each step fail. It is not the product gateway: the real
one is exercised by tests/integration/test_invite_join.py."""
from __future__ import annotations

import asyncio
import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

from aiohttp import web

from hearthnet.errors import HearthNetError, http_status_for
from hearthnet.identity.keys import KeyPair
from hearthnet.identity.manifest import build_node_manifest, parse_rfc3339, rfc3339, utcnow
from hearthnet.ledger.events import build_admission
from hearthnet.ledger.store import EventLog
from hearthnet.transport import signing
from hearthnet.transport.tls import add_tls_fields, ensure_tls_identity, server_ssl_context

HARDWARE = {"gpu": None, "vram_gb": 0.0, "ram_gb": 8.0, "cpu_cores": 4, "disk_free_gb": 10.0}
LOAD = {"cpu": 0.0, "vram_used_gb": 0.0, "in_flight_total": 0}


@dataclass
class Inviter:
    kp: KeyPair
    log: EventLog
    tls: Any
    port: int = 0
    manifest_kp: KeyPair | None = None  # serve another node's manifest at this address
    community_manifest: Callable[[], Any] | None = None  # override /community/manifest
    refuse_sync: bool = False
    open_sync: bool = False  # let anyone sync (to reach the redeemer's own checks)
    reject_push: bool = False
    replay: signing.ReplayCache = field(default_factory=signing.ReplayCache)
    seen: list[str] = field(default_factory=list)

    __test__ = False

    @property
    def community_id(self) -> str:
        return self.log.community_id

    def invite(self, invitee: str, level: str = "member", hours: float = 24) -> dict[str, Any]:
        return self.log.append_local(self.kp, "community.member.invited", {
            "invitee_node_id": invitee, "display_name": "bob", "initial_level": level,
            "expires_at": rfc3339(utcnow() + timedelta(hours=hours))})

    # ---- routes -------------------------------------------------------------------------

    async def manifest(self, request: web.Request) -> web.Response:
        kp = self.manifest_kp or self.kp
        m = build_node_manifest(kp, display_name="alice", community_id=self.community_id, profile="hearth",
                                endpoints=[{"transport": "https", "host": "127.0.0.1", "port": self.port}],
                                hardware=HARDWARE, capabilities=[], uptime_seconds=1, load=LOAD)
        return web.json_response(add_tls_fields(m, self.tls, kp))

    async def get_community_manifest(self, request: web.Request) -> web.Response:
        m = self.community_manifest() if self.community_manifest else self.log.view.manifest(self.kp)
        return web.json_response(m)

    async def _signed(self, request: web.Request, capability: str) -> dict[str, Any]:
        raw = await request.read()
        caller = signing.verify_request(request.headers, raw, replay=self.replay,
                                        self_node_id=self.kp.node_id_full,
                                        community_id=self.community_id, expect_capability=capability)
        body = json.loads(raw)
        self.seen.append(request.path)
        invited = any(i["invitee_node_id"] == caller for i in self.log.view.pending_invites())
        if self.refuse_sync or not (self.open_sync or self.log.view.is_member(caller) or invited):
            raise HearthNetError("unauthorized", f"{caller} is not a member of this community")
        return body

    def _reply(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        rid = request.headers[signing.H_REQUEST_ID]
        return web.json_response(body, headers=signing.sign_response(self.kp, rid, 200, body))

    async def ids(self, request: web.Request) -> web.Response:
        await self._signed(request, signing.SYNC_IDS)
        return self._reply(request, {"ids": self.log.ids_since(0)})

    async def pull(self, request: web.Request) -> web.Response:
        body = await self._signed(request, signing.SYNC_PULL)
        return self._reply(request, {"events": self.log.events(ids=body["ids"])})

    async def events(self, request: web.Request) -> web.Response:
        body = await self._signed(request, signing.SYNC_EVENTS)
        if self.reject_push:
            return self._reply(request, {"accepted": 0, "rejected": 1, "duplicates": 0, "new_head_lamport": 0,
                                         "rejected_reasons": [{"event_id": None, "reason": "unauthorized"}]})
        return self._reply(request, self.log.append_received(body["events"]).to_wire())

    async def admit(self, request: web.Request) -> web.Response:
        """The product's rule (gateway/admit.py): sign only for the addressee of an
        unused invite of ours, and only before it expires on OUR clock."""
        body = await self._signed(request, signing.SYNC_ADMIT)
        caller = request.headers[signing.H_FROM]
        invite = self.log.get(body["invite_event_id"])
        if invite is None or invite["data"]["invitee_node_id"] != caller:
            raise HearthNetError("unauthorized", "not your invite")
        if utcnow() > parse_rfc3339(invite["data"]["expires_at"]):
            raise HearthNetError("invite_expired", "the invite has expired")
        return self._reply(request, {"admission": build_admission(self.kp, invite["event_id"], caller)})

    @web.middleware
    async def errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except HearthNetError as exc:
            return web.json_response(exc.to_wire(), status=http_status_for(exc.code))


@contextmanager
def running_inviter(root: Path, kp: KeyPair) -> Iterator[Inviter]:
    """The founder `kp` of a new community (genesis written), serving on a free port."""
    log = EventLog(root / "inviter-log" / "events.sqlite", kp.node_id_full)
    log.create_genesis(kp, "Maple Street", display_name="alice")
    inviter = Inviter(kp, log, ensure_tls_identity(kp, root / "inviter-tls", "127.0.0.1"))
    app = web.Application(middlewares=[inviter.errors])
    app.router.add_get("/manifest", inviter.manifest)
    app.router.add_get("/community/manifest", inviter.get_community_manifest)
    app.router.add_post("/sync/v1/ids", inviter.ids)
    app.router.add_post("/sync/v1/pull", inviter.pull)
    app.router.add_post("/sync/v1/events", inviter.events)
    app.router.add_post("/sync/v1/admit", inviter.admit)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    runner = web.AppRunner(app)

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl_context(inviter.tls))
        loop.run_until_complete(site.start())
        inviter.port = runner.addresses[0][1]
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="inviter", daemon=True)
    thread.start()
    assert ready.wait(10), "inviter did not start"
    try:
        yield inviter
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        log.close()
