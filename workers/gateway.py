"""Process entry point: the aiohttp gateway on transport.host:transport.port."""
import asyncio
import os
import signal

from aiohttp import web

from hearthnet.bus.client import BusClient
from hearthnet.gateway.app import build_local_app, build_peer_app, load_gateway
from hearthnet.gateway.mesh import Mesh
from hearthnet.membership import Membership
from hearthnet.transport.client import PeerClient
from hearthnet.transport.pinning import PinStore
from hearthnet.transport.tls import server_ssl_context
from hearthnet.process import start_process


async def serve() -> None:
    cfg, log, _ = start_process("gateway")
    bus = BusClient(cfg.paths.broker_clients_endpoint)
    await bus.start()
    gw = load_gateway(cfg, bus)
    gw.members = Membership(bus, gw.kp.node_id_full)
    gw.members.start()
    local = web.AppRunner(build_local_app(gw), handler_cancellation=True, access_log=None)
    peers = web.AppRunner(build_peer_app(gw), handler_cancellation=True, access_log=None)
    await local.setup()
    await peers.setup()
    await web.TCPSite(peers, cfg.transport.host, cfg.transport.port, reuse_address=True,
                      ssl_context=server_ssl_context(gw.tls)).start()
    cfg.paths.api_socket.unlink(missing_ok=True)  # a stale socket of a killed gateway
    await web.UnixSite(local, str(cfg.paths.api_socket)).start()
    os.chmod(cfg.paths.api_socket, 0o600)
    gw.mesh = Mesh(bus, PeerClient(gw.kp, cfg.community.community_id or "",
                                   PinStore(cfg.paths.tls_dir / "known_peers.json")),
                   cfg.community.community_id or "", cfg.paths.broker_workers_endpoint, gw.members)
    gw.mesh.start()
    log.info("gateway listening", extra={"host": cfg.transport.host, "port": cfg.transport.port,
                                         "socket": str(cfg.paths.api_socket),
                                         "tls_fingerprint": gw.tls.fingerprint})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await gw.mesh.close()
    await gw.members.close()
    await gw.mesh.client.close()
    await peers.cleanup()
    await local.cleanup()
    await bus.close()


def main() -> None:
    asyncio.run(serve())


if __name__ == "__main__":
    main()
