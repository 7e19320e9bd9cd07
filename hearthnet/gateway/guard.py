"""The peer port's connection guard: limits that hold before a byte of HTTP is parsed.

aiohttp and asyncio give an HTTPS listener no cap on connections and no deadline for a
request's headers; 1 000 half-sent requests held 1 000 file descriptors for minutes and
the node ran out of them (its local API too). So the peer listener is a plain TCP
server whose protocol is `_GuardedConnection`: at accept it counts the connection per
source address and in total, refuses one over the caps at once (abort, no TLS
handshake), and only then wraps asyncio's own TLS protocol (`sslproto.SSLProtocol`, what
`loop.create_server(ssl=...)` uses inside) around aiohttp's request handler. Because the
guard sits under TLS it sees every close, including failed handshakes, so its counts
never drift.

Deadlines: the TLS handshake (HANDSHAKE_SECONDS) and then the first request's headers
must arrive within HEADER_SECONDS of the accept; after each request on a connection
whose sender is not yet a verified member, the next request's headers must follow
within HEADER_SECONDS too (idle anonymous keep-alives are closed). A connection on
which a current member's signed request was verified (`trust`) is left to aiohttp's
keep-alive timeout. Body deadlines are the reader's (peer_api.read_body).

When the total cap is reached, the oldest connection not (yet) trusted is closed to
make room, so a flood of slow strangers cannot keep a member's new connection out;
only if every connection is trusted is the new one refused. The per-address cap is a
plain refusal: an address cannot push out the connections of others.
"""
from __future__ import annotations

import asyncio
import logging
import resource
import ssl
from asyncio import sslproto
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from aiohttp import web

log = logging.getLogger("hearthnet.gateway.guard")

HANDSHAKE_SECONDS = 5.0
HEADER_SECONDS = 8.0
MAX_CONNECTIONS_TOTAL = 512
MAX_CONNECTIONS_PER_ADDRESS = 64
# File descriptors kept for everything but peer connections: the local API, the bus
# sockets, logs, the ledger files, outbound calls to peers.
RESERVED_FDS = 384


@dataclass(frozen=True)
class Limits:
    max_total: int = MAX_CONNECTIONS_TOTAL
    max_per_address: int = MAX_CONNECTIONS_PER_ADDRESS
    handshake_seconds: float = HANDSHAKE_SECONDS
    header_seconds: float = HEADER_SECONDS


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def limits_for_fds(soft_limit: int) -> Limits:
    """Peer connections take at most half of what is left after the reserve, so the
    local API always has descriptors (one per peer connection; TLS adds none)."""
    total = max(16, min(MAX_CONNECTIONS_TOTAL, (soft_limit - RESERVED_FDS) // 2))
    return Limits(max_total=total, max_per_address=min(MAX_CONNECTIONS_PER_ADDRESS, total))


class ConnectionGuard:
    def __init__(self, ssl_context: ssl.SSLContext, limits: Limits = Limits()) -> None:
        self.ssl_context, self.limits = ssl_context, limits
        self._conns: OrderedDict[int, _GuardedConnection] = OrderedDict()  # accept order
        self._by_peername: dict[Any, _GuardedConnection] = {}
        self._per_address: Counter[str] = Counter()
        self.refused = self.evicted = self.timed_out = 0

    # ---- counts ------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        return {"open": len(self._conns), "trusted": sum(c.trusted for c in self._conns.values()),
                "refused": self.refused, "evicted": self.evicted, "timed_out": self.timed_out,
                "max_total": self.limits.max_total, "max_per_address": self.limits.max_per_address}

    def _admit(self, conn: "_GuardedConnection") -> bool:
        if self._per_address[conn.address] >= self.limits.max_per_address:
            self.refused += 1
            return False
        if len(self._conns) >= self.limits.max_total and not self._evict_one():
            self.refused += 1
            return False
        self._conns[id(conn)] = conn
        self._by_peername[conn.peername] = conn
        self._per_address[conn.address] += 1
        return True

    def _evict_one(self) -> bool:
        victim = next((c for c in self._conns.values() if not c.trusted), None)
        if victim is None:
            return False
        self.evicted += 1
        victim.abort()  # its release() runs now, so the count is right at once
        return True

    def _release(self, conn: "_GuardedConnection") -> None:
        if self._conns.pop(id(conn), None) is None:
            return
        self._by_peername.pop(conn.peername, None)
        left = self._per_address[conn.address] - 1
        if left > 0:
            self._per_address[conn.address] = left
        else:
            del self._per_address[conn.address]

    # ---- request hooks (the peer app's middleware calls these) ------------------------

    def _lookup(self, transport: asyncio.BaseTransport | None) -> "_GuardedConnection | None":
        if transport is None:
            return None
        return self._by_peername.get(transport.get_extra_info("peername"))

    def request_started(self, transport: asyncio.BaseTransport | None) -> None:
        """Headers of a request are in: no header deadline while it is handled."""
        if (conn := self._lookup(transport)) is not None:
            conn.cancel_timer()

    def request_finished(self, transport: asyncio.BaseTransport | None) -> None:
        if (conn := self._lookup(transport)) is not None and not conn.trusted:
            conn.arm_timer(self.limits.header_seconds)

    def trust(self, transport: asyncio.BaseTransport | None) -> None:
        """A current member's signed request was verified on this connection."""
        if (conn := self._lookup(transport)) is not None:
            conn.trusted = True
            conn.cancel_timer()

    # ---- server ------------------------------------------------------------------------

    def protocol_factory(self, app_factory: Callable[[], asyncio.BaseProtocol]) -> Callable[[], asyncio.BaseProtocol]:
        return lambda: _GuardedConnection(self, app_factory)

    def close_all(self) -> None:
        for conn in list(self._conns.values()):
            conn.abort()


class _GuardedConnection(asyncio.BufferedProtocol):
    """One accepted TCP connection: admission, deadlines, then TLS + HTTP inside."""

    def __init__(self, guard: ConnectionGuard, app_factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self.guard, self.app_factory = guard, app_factory
        self.transport: asyncio.Transport | None = None
        self.inner: sslproto.SSLProtocol | None = None
        self.peername: Any = None
        self.address = ""
        self.trusted = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peername = transport.get_extra_info("peername")
        self.address = str(self.peername[0]) if isinstance(self.peername, tuple) else str(self.peername)
        if not self.guard._admit(self):
            transport.abort()  # over a cap: no handshake, no HTTP, the descriptor freed now
            return
        loop = asyncio.get_running_loop()
        limits = self.guard.limits
        self.inner = sslproto.SSLProtocol(loop, self.app_factory(), self.guard.ssl_context, None,
                                          server_side=True,
                                          ssl_handshake_timeout=limits.handshake_seconds)
        self.arm_timer(limits.header_seconds)
        self.inner.connection_made(transport)

    # Bytes flow straight into the TLS protocol (no copy: it lends us its buffer).
    def get_buffer(self, sizehint: int) -> Any:
        if self.inner is None:
            return bytearray(1024)  # refused: whatever arrives before the abort is dropped
        return self.inner.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        if self.inner is not None:
            self.inner.buffer_updated(nbytes)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_timer()
        self.guard._release(self)
        if self.inner is not None:
            inner, self.inner = self.inner, None
            inner.connection_lost(exc)

    # ---- deadlines ---------------------------------------------------------------------

    def arm_timer(self, seconds: float) -> None:
        self.cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._too_slow)

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self) -> None:
        self._timer = None
        self.guard.timed_out += 1
        self.abort()

    def abort(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()
        self.guard._release(self)  # at once; connection_lost follows and finds nothing


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections pass the ConnectionGuard (TLS is done inside it)."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard, *,
                 backlog: int = 512, reuse_address: bool | None = None) -> None:
        super().__init__(runner, host, port, backlog=backlog, reuse_address=reuse_address)
        self.guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        self._server = await loop.create_server(
            self.guard.protocol_factory(server), self._host, self._port,
            backlog=self._backlog, reuse_address=self._reuse_address)
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port

    @property
    def name(self) -> str:
        return super().name.replace("http://", "https://", 1)
