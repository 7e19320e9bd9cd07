"""DiscoveryService in-process: it starts announcing only once this node's gateway listens
(a peer that hears us earlier finds the port closed and backs off for up to 30 s)."""
from __future__ import annotations

import asyncio
import socket

import pytest

from hearthnet.config import Config, load_config
from hearthnet.node_init import DefaultsPrompter, InitOptions, init_node
from hearthnet.bus.service import Request
from hearthnet.services.discovery import DiscoveryService
from tests.unit.xdg_fixture import isolated_xdg  # noqa: F401  (autouse)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cfg(monkeypatch: pytest.MonkeyPatch) -> Config:
    init_node(InitOptions(name="porch", profile="hearth", interactive=False, config_path=None),
              prompt=DefaultsPrompter())
    monkeypatch.setenv("HEARTHNET_TRANSPORT_HOST", "127.0.0.1")
    monkeypatch.setenv("HEARTHNET_TRANSPORT_PORT", str(_free_port()))
    monkeypatch.setenv("HEARTHNET_DISCOVERY_UDP_ENABLED", "false")  # nothing here may multicast
    monkeypatch.setenv("HEARTHNET_DISCOVERY_MDNS_ENABLED", "false")
    return load_config()


def _list_request() -> Request:
    return Request(capability="community.peers.list", version="1.0", body={"params": {}, "input": {}})


def test_discovery_waits_for_the_gateway_port_then_starts(cfg: Config) -> None:
    svc = DiscoveryService(cfg)

    async def scenario() -> None:
        task = asyncio.ensure_future(svc._start_discovery())
        await asyncio.sleep(0.5)
        assert not task.done()
        out = (await svc.list_peers(_list_request()))["output"]
        assert out["discovery"]["running"] is False
        assert out["diagnose"] == [f"discovery starts once this node's gateway listens on 127.0.0.1:"
                                   f"{cfg.transport.port}"]
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", cfg.transport.port)
        try:
            await asyncio.wait_for(task, 3)
            out = (await svc.list_peers(_list_request()))["output"]
            assert out["discovery"]["running"] is True
            assert not any("gateway listens" in r for r in out["diagnose"])
        finally:
            server.close()
            await server.wait_closed()
            await svc.discovery.stop()

    asyncio.run(scenario())


def test_stop_while_waiting_for_the_gateway_is_prompt(cfg: Config) -> None:
    svc = DiscoveryService(cfg)

    async def scenario() -> None:
        svc._start_task = asyncio.ensure_future(svc._start_discovery())  # what start() spawns
        await asyncio.sleep(0.3)
        # the bus was never started: its close is a no-op. stop() cancels the wait for
        # the gateway rather than sitting it out (10 s only guards against a hang)
        await asyncio.wait_for(svc.stop(), 10)
        assert svc._start_task.cancelled()
        assert svc.discovery.status()["running"] is False

    asyncio.run(scenario())
