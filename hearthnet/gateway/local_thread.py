"""The local API on its own thread and event loop, with its own bus connection.

Under a flood the peer port's event loop is busy with TLS handshakes, signature checks
and refusals; a local request queued behind all of that waited hundreds of ms. On its
own loop the owner's `hearthnet status` only shares the GIL with the peer side (TLS
and Ed25519 release it while they compute), never the queue of ready callbacks.

The local Gateway is a copy of the main one with its own BusClient (a second DEALER on
the broker) and its own caches; it shares the config, keys, token, mesh (read only:
`status` lists its peers) and the connection guard with the main one.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
from pathlib import Path

from aiohttp import web

from hearthnet.bus.client import BusClient
from hearthnet.gateway.app import Gateway, build_local_app

log = logging.getLogger("hearthnet.gateway.local")


class LocalApiThread(threading.Thread):
    def __init__(self, gw: Gateway, socket_path: Path, bus_endpoint: str) -> None:
        super().__init__(name="local-api", daemon=True)
        self.main_gw, self.socket_path, self.bus_endpoint = gw, socket_path, bus_endpoint
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    def run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the starter through self.error
            self.error = exc
            log.exception("local API thread failed")
        finally:
            self.ready.set()
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        bus = BusClient(self.bus_endpoint)
        await bus.start()
        gw = dataclasses.replace(self.main_gw, bus=bus, origin=self.main_gw)
        runner = web.AppRunner(build_local_app(gw), handler_cancellation=True, access_log=None)
        await runner.setup()
        self.socket_path.unlink(missing_ok=True)  # a stale socket of a killed gateway
        await web.UnixSite(runner, str(self.socket_path)).start()
        os.chmod(self.socket_path, 0o600)
        scrape = None
        if gw.cfg.observability.metrics_port and gw.cfg.observability.metrics_enabled:
            from hearthnet.gateway import metrics  # only then (README "Lean processes")

            scrape = await metrics.start_scrape_port(gw)  # opt-in TCP /metrics, on this loop too
        self.ready.set()
        try:
            await self._stopping.wait()
        finally:
            if scrape is not None:
                await scrape.cleanup()
            await runner.cleanup()
            await bus.close()

    def start_and_wait(self, timeout: float = 10) -> None:
        self.start()
        if not self.ready.wait(timeout):
            raise RuntimeError("local API did not start")
        if self.error is not None:
            raise RuntimeError(f"local API failed to start: {self.error}") from self.error

    def stop(self, timeout: float = 5) -> None:
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self.join(timeout)
