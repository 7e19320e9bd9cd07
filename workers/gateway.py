"""Process entry point: the aiohttp gateway on transport.host:transport.port."""
import asyncio
import signal

from aiohttp import web

from hearthnet.bus.client import BusClient
from hearthnet.gateway.app import build_peer_app, load_gateway
from hearthnet.gateway.bodybudget import return_large_buffers_to_os
from hearthnet.gateway.health import start_health
from hearthnet.gateway.guard import ConnectionGuard, GuardedSite, limits_for_fds, raise_fd_limit
from hearthnet.gateway.local_thread import LocalApiThread
from hearthnet.gateway.mesh import Mesh
from hearthnet.logs import prune_forever
from hearthnet.membership import Membership
from hearthnet.transport.aiohttp_tls import release_ca_stores
from hearthnet.transport.client import PeerClient
from hearthnet.transport.pinning import PinStore
from hearthnet.transport.tls import server_ssl_context
from hearthnet.process import start_process, trim_heap


async def serve() -> None:
    cfg, log, _ = start_process("gateway")
    release_ca_stores()  # peers are pinned: aiohttp's CA bundles go (transport/aiohttp_tls.py)
    bus = BusClient(cfg.paths.broker_clients_endpoint)
    await bus.start()
    fds = raise_fd_limit()  # peer connections are capped well below it (guard.py)
    return_large_buffers_to_os()  # what the body budget admits is given back (bodybudget.py)
    gw = load_gateway(cfg, bus)
    gw.members = Membership(bus, gw.kp.node_id_full)  # before the local API copies gw
    gw.members.start()
    health = await start_health(gw)  # node.health@1.0, served here (gateway/health.py says why)
    gw.guard = ConnectionGuard(server_ssl_context(gw.tls), limits_for_fds(fds))
    # Peer connections: no lingering reads of a refused request's body (close instead),
    # idle keep-alives of members end after 75 s (the PeerClient drops its own at 60 s).
    peers = web.AppRunner(build_peer_app(gw), handler_cancellation=True, access_log=None,
                          lingering_time=0, keepalive_timeout=75)
    await peers.setup()
    await GuardedSite(peers, cfg.transport.host, cfg.transport.port, gw.guard,
                      reuse_address=True).start()
    gw.mesh = Mesh(bus, PeerClient(gw.kp, cfg.community.community_id or "",
                                   PinStore(cfg.paths.tls_dir / "known_peers.json")),
                   cfg.community.community_id or "", cfg.paths.broker_workers_endpoint, gw.members)
    # The local API runs on its own thread and loop: whatever the peer port suffers,
    # the owner's requests never queue behind it (local_thread.py).
    local = LocalApiThread(gw, cfg.paths.api_socket, cfg.paths.broker_clients_endpoint)
    await asyncio.to_thread(local.start_and_wait)
    gw.mesh.start()
    prune = asyncio.ensure_future(prune_forever(cfg.paths.log_dir))  # 14-day log retention
    trim_heap()  # what starting up freed goes back to the system now
    log.info("gateway listening", extra={"host": cfg.transport.host, "port": cfg.transport.port,
                                         "socket": str(cfg.paths.api_socket),
                                         "tls_fingerprint": gw.tls.fingerprint,
                                         "fd_limit": fds, "peer_connections_max": gw.guard.limits.max_total,
                                         "peer_body_budget_bytes": gw.bodies.total,
                                         "peer_body_per_sender_bytes": gw.bodies.per_sender})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    prune.cancel()
    await asyncio.to_thread(local.stop)
    await health.close()
    await gw.mesh.close()
    await gw.members.close()
    await gw.mesh.client.close()
    await peers.cleanup()
    gw.guard.close_all()
    await bus.close()


def main() -> None:
    asyncio.run(serve())


if __name__ == "__main__":
    main()
