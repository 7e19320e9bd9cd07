"""The detector service: rounds against a local DNS responder that goes away and comes
back, driven tick by tick with an injected clock; status and the watch stream follow."""
from __future__ import annotations

import asyncio
import struct
from typing import Any

from hearthnet.bus.service import Request
from hearthnet.emergency.probes import parse_target
from hearthnet.emergency.state import StateMachine
from hearthnet.services.emergency import EmergencyService


class Responder(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.up = True

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.up:
            self.transport.sendto(data[:2] + struct.pack("!HHHHH", 0x8180, 1, 0, 0, 0) + data[12:], addr)


class Bus:
    def __init__(self, peers: int) -> None:
        self.peers = peers

    async def call(self, cap: str, version: str, body: Any, **kw: Any) -> dict[str, Any]:
        assert cap == "community.peers.list"
        return {"output": {"peers": [{"node_id_full": str(i)} for i in range(self.peers)]}}


def test_rounds_status_and_watch() -> None:
    async def main() -> None:
        responder = Responder()
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: responder, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        now = [1_000_000.0]
        svc = EmergencyService([parse_target(f"dns:127.0.0.1:{port}"), parse_target("peers:any")],
                               Bus(peers=0), "me", StateMachine(clock=lambda: now[0], wall=lambda: now[0]),
                               timeout=0.3)
        stream = await svc.watch(Request("emergency.watch", "1.0", {}, stream=True))
        try:
            assert (await anext(stream))[1]["mode"] == "online"
            await svc.tick()
            st = (await svc.status(Request("emergency.status", "1.0", {})))["output"]
            assert st["mode"] == "online" and st["peers_reachable"] == 0
            assert [(p["kind"], p["ok"], p["deciding"]) for p in st["probes"]] == \
                [("dns", True, True), ("peers", False, False)]  # no peers: reported, not deciding
            responder.up = False
            for _ in range(16):  # 2 s apart: the single DNS probe fails for 30 s
                now[0] += 2
                await svc.tick()
            assert svc.machine.mode == "offline"
            assert (await anext(stream))[1]["mode"] == "degraded"
            offline = (await anext(stream))[1]
            assert offline["mode"] == "offline" and offline["probes"][0]["error"] == "timeout"
            assert offline["effects"]["sync_interval_seconds"] == 30
            assert offline["effects"]["llm_internet_backends"] == "withdrawn"
            assert svc.interval() == 2
            responder.up = True
            for _ in range(6):
                now[0] += 2
                await svc.tick()
            back = (await anext(stream))[1]
            assert back["mode"] == "online" and back["effects"]["sync_interval_seconds"] == 300
        finally:
            await stream.aclose()
            transport.close()
        assert not svc.watchers

    asyncio.run(main())
