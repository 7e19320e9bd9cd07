"""A stand-in "internet" for the emergency tests: `python -m hearthnet.testing.internet
--host H` serves, on H only, a DNS responder (UDP 53: NOERROR to every query), HTTP on
port 80 (`/generate_204` -> 204, anything else -> 200), with `--tls-cert C --tls-key K` the
same over HTTPS on port 443 (the test's own CA signs C), and, with `--llm`, an OpenAI-style
`/v1/models` on port 8080 (a LAN model server for the LLM worker to warm against).
Run inside a test's network namespace; it never answers anything outside it."""
from __future__ import annotations

import argparse
import asyncio
import ssl
import struct
from typing import Any

from aiohttp import web


class Dns(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) >= 12:
            self.transport.sendto(data[:2] + struct.pack("!HHHHH", 0x8180, 1, 0, 0, 0) + data[12:], addr)


async def _http(host: str, port: int, routes: list[web.RouteDef], tls: ssl.SSLContext | None = None) -> web.AppRunner:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=tls).start()
    return runner


async def serve(host: str, llm: bool, tls: ssl.SSLContext | None = None) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Dns, local_addr=(host, 53))

    async def ok(request: web.Request) -> web.Response:
        return web.Response(status=204 if request.path == "/generate_204" else 200)

    await _http(host, 80, [web.route("*", "/{tail:.*}", ok)])
    if tls is not None:
        await _http(host, 443, [web.route("*", "/{tail:.*}", ok)], tls)
    if llm:
        async def models(request: web.Request) -> web.Response:
            return web.json_response({"object": "list", "data": [{"id": "lan-model", "object": "model"}]})

        await _http(host, 8080, [web.get("/v1/models", models)])
    print("ready", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--llm", action="store_true")
    ap.add_argument("--tls-cert", help="PEM certificate for HTTPS on port 443 (with --tls-key)")
    ap.add_argument("--tls-key")
    args = ap.parse_args()
    tls = None
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    asyncio.run(serve(args.host, args.llm, tls))


if __name__ == "__main__":
    main()
