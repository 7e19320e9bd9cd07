"""A bare discovery node for tests: `python -m hearthnet.testing.discovery_node ...`.

Runs `Discovery` for a synthetic identity, serves its signed node manifest over plain
HTTP on the chosen interface (production uses the gateway's TLS endpoint), and prints one
JSON object per line on stdout:
    {"event": "ready", "node_id": ..., "node_id_short": ..., "host": ..., "port": ...}
    {"event": "added" | "updated" | "removed", "peer": {...}}
    {"event": "diagnose", "reasons": [...]}      (after a `diagnose` line on stdin)
    {"event": "status", "status": {...}}         (after a `status` line on stdin)
`quit` on stdin, end of stdin, SIGTERM or SIGINT stop it.

It refuses to run without --interface: test tooling must never multicast on every
interface of whatever machine it happens to run on.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp
from aiohttp import web

from hearthnet.config import DiscoveryConfig
from hearthnet.discovery import interfaces as ifsel
from hearthnet.discovery.cache import PeerCache
from hearthnet.discovery.registry import PeerEvent, PeerRegistry
from hearthnet.discovery.service import Discovery
from hearthnet.discovery.udp import DEFAULT_GROUP, DEFAULT_PORT
from hearthnet.identity.keys import KeyPair
from hearthnet.identity.manifest import build_node_manifest

HARDWARE = {"gpu": None, "vram_gb": 0, "ram_gb": 1, "cpu_cores": 1, "disk_free_gb": 1}
LOAD = {"cpu": 0.0, "vram_used_gb": 0, "in_flight_total": 0}


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hearthnet.testing.discovery_node")
    p.add_argument("--name", required=True, help="display name")
    p.add_argument("--seed-hex", required=True, help="32-byte node key seed, hex")
    p.add_argument("--community-seed-hex", required=True, help="32-byte community root key seed, hex")
    p.add_argument("--interface", action="append", required=True, help="interface name or IPv4 (repeatable)")
    p.add_argument("--http-port", type=int, default=7080)
    p.add_argument("--udp-group", default=DEFAULT_GROUP)
    p.add_argument("--udp-port", type=int, default=DEFAULT_PORT)
    p.add_argument("--no-udp", action="store_true")
    p.add_argument("--no-mdns", action="store_true")
    p.add_argument("--caps", default="experimental.echo", help="comma list of capability names")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def emit(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc, default=str) + "\n")
    sys.stdout.flush()


class ManifestServer:
    """GET /manifest -> a freshly signed node manifest (30 s TTL, like the gateway's)."""

    def __init__(self, kp: KeyPair, community_id: str, name: str, host: str, port: int, caps: list[str]) -> None:
        self.kp, self.community_id, self.name = kp, community_id, name
        self.host, self.port, self.caps = host, port, caps
        self.started = time.monotonic()
        self._runner: web.AppRunner | None = None

    def manifest(self) -> dict[str, Any]:
        return build_node_manifest(
            self.kp, display_name=self.name, community_id=self.community_id, profile="hearth",
            endpoints=[{"transport": "http", "host": self.host, "port": self.port}], hardware=HARDWARE,
            capabilities=[{"name": c, "version": "1.0", "stability": "experimental",
                           "schema_hash": "blake3:" + "0" * 64, "params": {}, "max_concurrent": 1} for c in self.caps],
            uptime_seconds=int(time.monotonic() - self.started), load=LOAD)

    async def _handle(self, request: web.Request) -> web.Response:
        return web.json_response(self.manifest())

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/manifest", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def http_fetcher(session: aiohttp.ClientSession) -> Callable[[str, int], Awaitable[dict[str, Any]]]:
    """Plain-HTTP stand-in for the gateway's TLS + pinning manifest client."""

    async def fetch_manifest(host: str, port: int) -> dict[str, Any]:
        url = f"http://{host}:{port}/manifest"
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            resp.raise_for_status()
            doc: dict[str, Any] = await resp.json()
            return doc

    return fetch_manifest


def _print_event(event: PeerEvent) -> None:
    emit({"event": event.kind, "peer": event.peer.to_json()})


async def _commands(discovery: Discovery, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while not stop.is_set():
        line = (await reader.readline()).decode().strip()
        if line in ("", "quit"):
            break
        if line == "diagnose":
            emit({"event": "diagnose", "reasons": discovery.diagnose()})
        elif line == "status":
            emit({"event": "status", "status": discovery.status()})
    stop.set()


async def run(ns: argparse.Namespace) -> int:
    kp = KeyPair.from_seed(bytes.fromhex(ns.seed_hex))
    community_id = KeyPair.from_seed(bytes.fromhex(ns.community_seed_hex)).node_id_full
    selection = ifsel.select(ns.interface)
    if not selection.addrs:
        emit({"event": "error", "message": f"no IPv4 address on {ns.interface}"})
        return 1
    host = ifsel.advertised(selection)[0]
    caps = [c for c in ns.caps.split(",") if c]
    server = ManifestServer(kp, community_id, ns.name, host, ns.http_port, caps)
    await server.start()
    config = DiscoveryConfig(mdns_enabled=not ns.no_mdns, udp_enabled=not ns.no_udp, udp_multicast_group=ns.udp_group,
                             udp_port=ns.udp_port, interfaces=tuple(ns.interface))
    data_dir = ns.data_dir or Path(tempfile.mkdtemp(prefix="hn-discovery-"))
    registry = PeerRegistry(kp.node_id_full, community_id)
    registry.subscribe(_print_event)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with aiohttp.ClientSession() as session:
        discovery = Discovery(config, kp, community_id, ns.http_port, ns.name, "hearth", lambda: caps,
                              http_fetcher(session), registry, PeerCache.for_data_dir(data_dir), data_dir)
        async with discovery:
            emit({"event": "ready", "node_id": kp.node_id_full, "node_id_short": kp.node_id_short,
                  "host": host, "port": ns.http_port, "status": discovery.status()})
            commands = asyncio.ensure_future(_commands(discovery, stop))
            await stop.wait()
            commands.cancel()
    await server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    ns = _args(argv)
    logging.basicConfig(level=ns.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(run(ns))


if __name__ == "__main__":
    raise SystemExit(main())
