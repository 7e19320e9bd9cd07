"""One bad peer must not stop mesh work (issue 6): real nodes A and B, and two hostile
members (invited and joined like anyone, then served by a small test server speaking the
wire contract with their keys): H1's signed manifest offers `"max_concurrent": "lots"`,
H2 answers `/sync/v1/ids` with garbage. Before, H1 ended A's peer watcher for good (no
later peer was ever added) and H2's reply ended the sync task. Now H1 is refused with one
log line, H2's rounds fail with `bad_response`, and B is still added and still gets A's
news."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hearthnet.identity import keys
from hearthnet.identity.manifest import build_node_manifest
from hearthnet.testing.nodes import Node, free_port, join_by_invite
from hearthnet.transport import signing
from hearthnet.transport.tls import ensure_tls_identity, manifest_tls_fields, server_ssl_context
from hearthnet.testing.waiting import wait_for
from tests.integration.test_three_nodes import append, has_event

pytestmark = pytest.mark.integration

CAP = {"name": "experimental.echo", "version": "1.0", "stability": "experimental",
       "schema_hash": "blake3:" + "0" * 64, "params": {}, "max_concurrent": 2}


class HostilePeer:
    """A joined member's key and certificate, served by a server that misbehaves."""

    def __init__(self, member: Node, community_id: str, mode: str) -> None:
        self.kp = keys.load(member.root / "data" / "hearthnet" / "keys")
        self.node_id = self.kp.node_id_full
        self.cid, self.mode, self.port = community_id, mode, free_port()
        self.tls = ensure_tls_identity(self.kp, member.root / "hostile-tls", "127.0.0.1")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None

    def manifest(self) -> dict[str, Any]:
        caps = [CAP] + ([{**CAP, "name": "llm.chat", "max_concurrent": "lots"}] if self.mode == "lots" else [])
        return build_node_manifest(
            self.kp, display_name=f"hostile-{self.mode}", community_id=self.cid, profile="hearth",
            endpoints=[{"transport": "https", "host": "127.0.0.1", "port": self.port}],
            hardware={"gpu": None, "vram_gb": 0.0, "ram_gb": 8.0, "cpu_cores": 4, "disk_free_gb": 10.0},
            capabilities=caps, uptime_seconds=1, load={"cpu": 0.0, "vram_used_gb": 0.0, "in_flight_total": 0},
            extra_fields=manifest_tls_fields(self.tls))

    def _signed(self, request: web.Request, body: Any) -> web.Response:
        rid = request.headers.get(signing.H_REQUEST_ID, "")
        return web.json_response(body, headers=signing.sign_response(self.kp, rid, 200, body))

    async def get_manifest(self, request: web.Request) -> web.Response:
        return web.json_response(self.manifest())

    async def heads(self, request: web.Request) -> web.Response:  # differs from anyone's: go on to ids
        return self._signed(request, {"community_id": self.cid, "head": 999, "count": 999,
                                      "heads_by_type": {}, "digest": "blake3:" + "f" * 64})

    async def ids(self, request: web.Request) -> web.Response:
        return self._signed(request, {"ids": [{"evil": 1}, ["x"], 7]})

    async def rest(self, request: web.Request) -> web.Response:
        return web.json_response({"error": "not_found", "message": "nothing here"}, status=404)

    def start(self) -> None:
        app = web.Application()
        app.router.add_get("/manifest", self.get_manifest)
        app.router.add_get("/sync/v1/heads", self.heads)
        app.router.add_post("/sync/v1/ids", self.ids)
        app.router.add_route("*", "/{tail:.*}", self.rest)
        self.thread.start()

        async def up() -> None:
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port,
                              ssl_context=server_ssl_context(self.tls)).start()

        asyncio.run_coroutine_threadsafe(up(), self.loop).result(10)

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _peer(node: Node, node_id: str) -> dict[str, Any] | None:
    return next((p for p in node.api("/api/v1/status").get("peers", []) if p["node_id"] == node_id), None)


def test_bad_peers_are_dropped_and_the_mesh_goes_on(make_node):
    a, b, h1, h2 = make_node("alice"), make_node("bob"), make_node("lots"), make_node("badids")
    a.init()
    a.start(wait_workers=("broker", "gateway", "ledger", "discovery"))
    cid = a.api("/api/v1/status")["community"]["community_id"]
    for member in (h1, h2, b):
        join_by_invite(a, member)  # all three are members: only their behaviour is bad
    hostile = [HostilePeer(h1, cid, "lots"), HostilePeer(h2, cid, "bad_ids")]
    try:
        for h in hostile:
            h.start()
        b.start(wait_workers=("broker", "gateway", "ledger", "discovery"))
        for h in hostile:
            r = a.cli("peer", "add", f"127.0.0.1:{h.port}")
            assert r.returncode == 0, r.stderr + r.stdout
        # H2's manifest is fine: it is a peer, and its sync rounds fail on its ids reply.
        wait_for(lambda: ((_peer(a, hostile[1].node_id) or {}).get("last_sync") or {}).get("error"),
                 timeout=60, message="a failed round with the bad-ids peer")
        last = _peer(a, hostile[1].node_id)["last_sync"]
        assert not last["ok"] and last["error"].startswith("bad_response"), last
        # After both hostile peers, a good one is still added and synced with.
        a.peer_add(b)
        b.peer_add(a)
        ids = {n: n.api("/api/v1/status")["node"]["node_id"] for n in (a, b)}
        wait_for(lambda: ids[b] in a.peers(), timeout=60, message="alice to add bob")
        assert hostile[0].node_id not in a.peers()  # its manifest is refused (bad_manifest)
        event_id = append(a, "c")
        wait_for(lambda: has_event(b, event_id), timeout=60, message="alice's news to reach bob")
        workers = a.api("/api/v1/workers")["workers"]
        assert all(w["healthy"] and w["restarts"] == 0 for w in workers), workers
        log = Path(a.log_dir / "gateway.log").read_text(encoding="utf-8", errors="replace")
        assert "Traceback" not in log, [line[:300] for line in log.splitlines() if "Traceback" in line][:3]
    finally:
        for h in hostile:
            h.stop()
