"""Process entry point: the aiohttp gateway on transport.host:transport.port."""
import asyncio
import signal

from aiohttp import web

from hearthnet.busclient import BusClient
from hearthnet.gateway.app import build_app, load_gateway
from hearthnet.process import start_process


async def serve() -> None:
    cfg, log, _ = start_process("gateway")
    bus = BusClient(cfg.paths.broker_clients_endpoint)
    await bus.start()
    runner = web.AppRunner(build_app(load_gateway(cfg, bus)), handler_cancellation=True,
                           access_log=None)
    await runner.setup()
    await web.TCPSite(runner, cfg.transport.host, cfg.transport.port, reuse_address=True).start()
    log.info("gateway listening", extra={"host": cfg.transport.host, "port": cfg.transport.port})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await bus.close()


def main() -> None:
    asyncio.run(serve())


if __name__ == "__main__":
    main()
