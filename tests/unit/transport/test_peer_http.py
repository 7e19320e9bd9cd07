"""hearthnet/transport/peer_http.py: the manifest GET over an asyncio TLS stream (what the
discovery worker uses instead of aiohttp), against raw TLS servers that misbehave. The
well-behaved cases run through PeerClient.get_manifest in test_client.py."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from hearthnet.errors import HearthNetError
from hearthnet.identity.keys import generate
from hearthnet.identity.manifest import build_node_manifest
from hearthnet.transport import peer_http
from hearthnet.transport.pinning import PinStore
from hearthnet.transport.tls import TlsIdentity, add_tls_fields, ensure_tls_identity, server_ssl_context
from tests.unit.transport.peer_server import HARDWARE, LOAD

Reply = Callable[[TlsIdentity], bytes]


def http(status: int, body: bytes, length: int | None = None) -> bytes:
    n = len(body) if length is None else length
    return f"HTTP/1.0 {status} X\r\nContent-Type: application/json\r\nContent-Length: {n}\r\n\r\n".encode() + body


def manifest_reply(kp: Any) -> Reply:
    def reply(ident: TlsIdentity) -> bytes:
        m = build_node_manifest(kp, display_name="p", community_id=kp.node_id_full, profile="hearth",
                                endpoints=[], hardware=HARDWARE, capabilities=[], uptime_seconds=0, load=LOAD)
        return http(200, json.dumps(add_tls_fields(m, ident, kp)).encode())
    return reply


async def serve(tmp: Path, reply: Reply | None, received: list[bytes],
                body: Callable[[int, TlsIdentity], Awaitable[Any]]) -> Any:
    """A raw TLS server on 127.0.0.1 answering every connection with `reply` (None: never
    answers); `received` collects what each client sent before the reply."""
    ident = ensure_tls_identity(generate(), tmp / "tls", "127.0.0.1")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            data = await reader.read(65536)
            received.append(data)
            if reply is None:
                await asyncio.sleep(30)
            writer.write(reply(ident))
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ssl_context(ident))
    try:
        return await body(server.sockets[0].getsockname()[1], ident)
    finally:
        server.close()


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


async def failure(aw: Awaitable[Any]) -> HearthNetError:
    with pytest.raises(HearthNetError) as exc:
        await aw
    return exc.value


def test_a_plain_http10_get_pins_on_first_contact(tmp_path):
    kp, received, pins = generate(), [], PinStore(tmp_path / "pins.json")

    async def body(port: int, ident: TlsIdentity) -> None:
        m, fp = await peer_http.get_manifest(pins, "127.0.0.1", port, timeout=5)
        assert (m["node_id"], fp) == (kp.node_id_full, ident.fingerprint)
        assert pins.expected(kp.node_id_full) == fp

    run(serve(tmp_path, manifest_reply(kp), received, body))
    assert received[0].startswith(b"GET /manifest HTTP/1.0\r\n") and b"\r\nHost: 127.0.0.1:" in received[0]


def test_a_pinned_fetch_sends_nothing_to_another_certificate(tmp_path):
    kp, received, pins = generate(), [], PinStore(tmp_path / "pins.json")
    pins.record(kp.node_id_full, "sha256:" + "a" * 64)

    async def body(port: int, _: TlsIdentity) -> None:
        err = await failure(peer_http.get_manifest(pins, "127.0.0.1", port, node_id=kp.node_id_full, timeout=5))
        assert err.code == "invalid_signature"

    run(serve(tmp_path, manifest_reply(kp), received, body))
    assert received in ([], [b""])  # the handshake, then nothing: not a byte of a request


def test_a_peer_error_body_is_the_peers_error(tmp_path):
    reply = http(404, json.dumps({"error": "not_found", "message": "no manifest"}).encode())

    async def body(port: int, _: TlsIdentity) -> None:
        err = await failure(peer_http.fetch_manifest("127.0.0.1", port, pin=None, timeout=5))
        assert isinstance(err, peer_http.PeerCallError) and (err.code, err.http_status) == ("not_found", 404)

    run(serve(tmp_path, lambda _: reply, [], body))


@pytest.mark.parametrize("reply,code", [
    (http(200, b'{"node_id": "x"}', length=4096), "partition"),  # closed before Content-Length
    (b"garbage", "partition"),  # no HTTP head at all
    (http(200, b"[1, 2]"), "internal_error"),  # not a JSON object
    (http(200, b"{" + b" " * 5000 + b"}"), "internal_error"),  # over the reply bound (patched to 4 KiB)
    (b"HTTP/1.0 200 OK\r\nX: " + b"a" * 66_000, "internal_error"),  # a head that never ends (> 64 KiB)
])
def test_bad_replies_are_refused(tmp_path, monkeypatch, reply, code):
    monkeypatch.setattr(peer_http, "MAX_REPLY_BYTES", 4096)

    async def body(port: int, _: TlsIdentity) -> None:
        err = await failure(peer_http.fetch_manifest("127.0.0.1", port, pin=None, timeout=5))
        assert err.code == code

    run(serve(tmp_path, lambda _: reply, [], body))


def test_a_peer_that_never_answers_is_a_timeout_and_a_closed_port_a_partition(tmp_path):
    async def body(port: int, _: TlsIdentity) -> None:
        err = await failure(peer_http.fetch_manifest("127.0.0.1", port, pin=None, timeout=0.5))
        assert err.code == "timeout"

    run(serve(tmp_path, None, [], body))

    async def closed() -> HearthNetError:
        return await failure(peer_http.fetch_manifest("127.0.0.1", 1, pin=None, timeout=5))

    err = run(closed())
    assert err.code == "partition" and err.message == "peer unreachable: 127.0.0.1:1: Connection refused"


def test_a_peer_that_keeps_the_connection_open_after_the_body_is_not_waited_for(tmp_path):
    kp = generate()

    async def body(port: int, _: TlsIdentity) -> None:
        m, _fp = await peer_http.fetch_manifest("127.0.0.1", port, pin=None, timeout=5)
        assert m["node_id"] == kp.node_id_full

    async def lingering(port_body: Callable[[int, TlsIdentity], Awaitable[Any]]) -> None:
        ident = ensure_tls_identity(generate(), tmp_path / "tls", "127.0.0.1")
        reply = manifest_reply(kp)(ident)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(65536)
            writer.write(reply)
            await writer.drain()
            await asyncio.sleep(30)  # never closes: only Content-Length says the body is done

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ssl_context(ident))
        try:
            await port_body(server.sockets[0].getsockname()[1], ident)
        finally:
            server.close()

    run(lingering(body))


def test_an_ipv6_literal_in_brackets_or_not(tmp_path):
    kp = generate()
    ident = ensure_tls_identity(generate(), tmp_path / "tls", "::1")

    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(65536)
            writer.write(manifest_reply(kp)(ident))
            await writer.drain()
            writer.close()

        try:
            server = await asyncio.start_server(handle, "::1", 0, ssl=server_ssl_context(ident))
        except OSError:
            pytest.skip("no IPv6 loopback here")
        try:
            port = server.sockets[0].getsockname()[1]
            for host in ("::1", "[::1]"):
                m, fp = await peer_http.fetch_manifest(host, port, pin=ident.fingerprint, timeout=5)
                assert (m["node_id"], fp) == (kp.node_id_full, ident.fingerprint)
        finally:
            server.close()

    run(main())
