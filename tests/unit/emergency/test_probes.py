"""Probes against local servers only: a DNS responder on 127.0.0.1 UDP, an aiohttp 204
server, and servers that hang (they must be cut at the timeout)."""
from __future__ import annotations

import asyncio
import errno
import socket
import struct
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hearthnet.emergency.probes import (DNS_PROBE_NAME, Probe, connect_error, default_route, dns_query, parse_target,
                                       run_round)

TIMEOUT = 0.5


class Responder(asyncio.DatagramProtocol):
    """Answers every query with NOERROR and no records (the id and QR bit are what count)."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        txid, = struct.unpack("!H", data[:2])
        self.transport.sendto(struct.pack("!HHHHHH", txid, 0x8180, 1, 0, 0, 0) + data[12:], addr)


async def _udp(protocol: Any) -> tuple[Any, int]:
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(protocol, local_addr=("127.0.0.1", 0))
    return transport, transport.get_extra_info("sockname")[1]


async def _web(status: int) -> tuple[web.AppRunner, int]:
    async def handler(request: web.Request) -> web.Response:
        if request.path == "/hang":
            await asyncio.sleep(5)
        return web.Response(status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


def test_parse_targets() -> None:
    assert parse_target("1.1.1.1") == Probe("1.1.1.1", "dns", "1.1.1.1")
    assert parse_target("cloudflare.com") == Probe("cloudflare.com", "https", "https://cloudflare.com/")
    assert parse_target("dns:10.0.0.1:5353").arg == "10.0.0.1:5353"
    assert parse_target("http204:http://x/generate_204").kind == "http204"
    assert parse_target("peers:2").deciding is False
    assert parse_target("route:default").deciding is True
    for bad in ("", "dns:example.com", "https:ftp://x", "route:eth0", "peers:0", "http://x/", "unknown:1"):
        with pytest.raises(ValueError):
            parse_target(bad)


def test_dns_query_is_well_formed() -> None:
    q = dns_query(0x1234)
    assert q[:2] == b"\x12\x34" and q[2:4] == b"\x01\x00"
    assert DNS_PROBE_NAME.split(".")[0].encode() in q


def test_probes_against_local_servers() -> None:
    async def main() -> list[Any]:
        dns, dns_port = await _udp(Responder)
        silent, silent_port = await _udp(asyncio.DatagramProtocol)  # never answers
        ok204, p204 = await _web(204)
        ok200, p200 = await _web(200)
        hang = await asyncio.start_server(lambda r, w: asyncio.sleep(5), "127.0.0.1", 0)
        hang_port = hang.sockets[0].getsockname()[1]
        try:
            probes = [parse_target(t) for t in (
                f"dns:127.0.0.1:{dns_port}", f"dns:127.0.0.1:{silent_port}",
                f"http204:http://127.0.0.1:{p204}/generate_204", f"http204:http://127.0.0.1:{p200}/generate_204",
                f"https:http://127.0.0.1:{p200}/", f"https:http://127.0.0.1:{p204}/hang",
                f"http204:http://127.0.0.1:{hang_port}/", "peers:any", "peers:3")]

            async def two_peers() -> int:
                return 2

            return await run_round(probes, TIMEOUT, two_peers)
        finally:
            dns.close()
            silent.close()
            hang.close()
            await ok204.cleanup()
            await ok200.cleanup()

    r = asyncio.run(main())
    assert [x.ok for x in r] == [True, False, True, False, True, False, False, True, False]
    assert r[1].error == "timeout" and r[5].error == "timeout" and r[6].error == "timeout"
    assert "not 204" in r[3].error
    assert all(x.ms < 5_000 for x in r)  # cut, not waited for (the servers hang 5 s)


def test_connection_refused_fails_fast() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        r = asyncio.run(run_round([parse_target(f"https:http://127.0.0.1:{port}/")], TIMEOUT))
    assert r[0].ok is False and r[0].error == "refused"


@pytest.mark.parametrize(("err", "word"), [
    (OSError(errno.EHOSTUNREACH, "Connect call failed ('10.0.0.4', 443)"), "unreachable"),
    (OSError(errno.ENETUNREACH, "x"), "unreachable"),
    (OSError(errno.ECONNREFUSED, "x"), "refused"),
    (TimeoutError(), "timeout"),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "name lookup failed: Name or service not known"),
    (OSError(errno.EPERM, "Operation not permitted"), "connect failed: Operation not permitted"),
])
def test_connect_errors_read_as_words(err: OSError, word: str) -> None:
    assert connect_error(err) == word


def test_default_route(tmp_path: Path) -> None:
    head = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
    v4, v6 = tmp_path / "route", tmp_path / "ipv6_route"
    v4.write_text(head + "eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
    v6.write_text("00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
                  "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n")
    assert default_route(v4, v6) is False  # a LAN route and an unreachable default on lo
    v4.write_text(head + "eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n")
    assert default_route(v4, v6) is True
    assert default_route(tmp_path / "missing", tmp_path / "missing6") is False
