"""The peer port's connection guard with a real aiohttp server on 127.0.0.1: caps per
address and in total, eviction of untrusted connections, the header deadline."""
from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
from aiohttp import web

from hearthnet.gateway.guard import ConnectionGuard, GuardedSite, Limits, limits_for_fds
from hearthnet.identity.keys import generate
from hearthnet.transport.tls import ensure_tls_identity, server_ssl_context


def client_tls() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def serve(tmp: Path, limits: Limits):
    tls = ensure_tls_identity(generate(), tmp, "127.0.0.1")
    guard = ConnectionGuard(server_ssl_context(tls), limits)

    async def hello(request: web.Request) -> web.Response:
        if request.query.get("trust"):
            guard.trust(request.transport)
        return web.json_response({"ok": True})

    @web.middleware
    async def hooks(request, handler):
        guard.request_started(request.transport)
        try:
            return await handler(request)
        finally:
            guard.request_finished(request.transport)

    app = web.Application(middlewares=[hooks])
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app, lingering_time=0)
    await runner.setup()
    site = GuardedSite(runner, "127.0.0.1", 0, guard)
    await site.start()
    return guard, runner, site.port


async def half_open(port: int, source: str = "127.0.0.1"):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_tls(), local_addr=(source, 0))
    writer.write(b"GET /hello HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    await writer.drain()
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 5) == b""
    except (ConnectionError, ssl.SSLError):
        return True


def test_requests_are_served_through_the_guard(tmp_path):
    async def main():
        guard, runner, port = await serve(tmp_path, Limits())
        try:
            async with aiohttp.ClientSession() as s:
                async with s.get(f"https://127.0.0.1:{port}/hello", ssl=False) as r:
                    assert (r.status, await r.json()) == (200, {"ok": True})
            assert guard.stats()["refused"] == 0
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_per_address_cap_refuses_at_once_and_others_still_get_in(tmp_path):
    async def main():
        guard, runner, port = await serve(tmp_path, Limits(max_total=50, max_per_address=3))
        try:
            held = [await half_open(port, "127.0.0.2") for _ in range(3)]
            try:
                await half_open(port, "127.0.0.2")
                refused = False
            except (ConnectionError, ssl.SSLError, OSError):
                refused = True
            assert refused and guard.stats()["refused"] == 1
            async with aiohttp.ClientSession() as s:  # another address is not affected
                async with s.get(f"https://127.0.0.1:{port}/hello", ssl=False) as r:
                    assert r.status == 200
            for _, w in held:
                w.transport.abort()
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_total_cap_evicts_the_oldest_untrusted_connection(tmp_path):
    async def main():
        guard, runner, port = await serve(tmp_path, Limits(max_total=4, max_per_address=10))
        try:
            async with aiohttp.ClientSession() as s:
                async with s.get(f"https://127.0.0.1:{port}/hello?trust=1", ssl=False) as r:
                    assert r.status == 200  # a trusted keep-alive connection, first in line
                held = [await half_open(port, "127.0.0.3") for _ in range(3)]
                newcomer = await half_open(port, "127.0.0.4")  # the table is full: evict
                assert await closed_by_server(held[0][0])
                assert guard.stats()["evicted"] == 1
                async with s.get(f"https://127.0.0.1:{port}/hello", ssl=False) as r:
                    assert r.status == 200  # the trusted connection survived, reused
                for _, w in (*held, newcomer):
                    w.transport.abort()
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_a_half_sent_request_is_cut_at_the_header_deadline(tmp_path):
    async def main():
        guard, runner, port = await serve(tmp_path, Limits(header_seconds=0.5, handshake_seconds=0.5))
        try:
            reader, writer = await half_open(port)
            assert await closed_by_server(reader)
            writer.transport.abort()
            assert guard.stats()["timed_out"] == 1 and guard.stats()["open"] == 0
            # a bare TCP connection that never starts TLS is cut too
            r2, w2 = await asyncio.open_connection("127.0.0.1", port)
            assert await closed_by_server(r2)
            w2.transport.abort()
            await asyncio.sleep(0.1)
            assert guard.stats()["open"] == 0
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_fd_based_limits_leave_a_reserve():
    assert limits_for_fds(1024).max_total == 320
    assert limits_for_fds(65536).max_total == 512
    assert limits_for_fds(100).max_total == 16
