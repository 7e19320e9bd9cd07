"""Probes of the emergency detector (spec svc-emergency-ui §1.3). A target is a string with
a kind prefix; one without a prefix keeps the spec's meaning (an IP address -> DNS query,
a name -> HTTPS HEAD):

    dns:1.1.1.1[:53]            a DNS A query for DNS_PROBE_NAME sent straight to that resolver over UDP
    http204:http://host/generate_204   GET, the answer must be 204 (a captive portal's 200/302 fails)
    https:https://host/         HEAD, any 2xx/3xx (redirects are not followed)
    route:default               a default route in /proc/net/route or /proc/net/ipv6_route
    peers:any | peers:N         at least 1 (N) verified peers; reported beside the mode, never deciding it

Every probe runs under `asyncio.wait_for(..., timeout)`, so a hanging target is cancelled
at the timeout and shows as failed with error "timeout"; probes of a round run concurrently.

An https:// URL (in https: or http204: targets) is fetched with full TLS verification:
certificate chain and hostname, against the system trust store or, when
`emergency.https_ca_file` is set, that CA bundle instead (`tls_context`). A captive portal
or a MITM answering with a certificate we do not trust is a FAILED probe, never "online".
"""
from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import ssl
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

KINDS = ("dns", "http204", "https", "route", "peers")
DECIDING = ("dns", "http204", "https", "route")  # the internet probes; "peers" is reported beside
DNS_PROBE_NAME = "a.root-servers.net"  # stable for decades; any answer from the resolver counts
PROC_ROUTE, PROC_ROUTE6 = Path("/proc/net/route"), Path("/proc/net/ipv6_route")


@dataclass(frozen=True)
class Probe:
    target: str  # as configured
    kind: str
    arg: str  # resolver host[:port], URL, "default", "any"/N

    @property
    def deciding(self) -> bool:
        return self.kind in DECIDING


@dataclass(frozen=True)
class ProbeResult:
    target: str
    kind: str
    ok: bool
    ms: float
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "kind": self.kind, "ok": self.ok, "ms": self.ms, "error": self.error}


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def parse_target(target: str) -> Probe:
    """ValueError with a plain reason for a target no probe understands."""
    if not isinstance(target, str) or not target.strip():
        raise ValueError("a probe target must be a non-empty string")
    target = target.strip()
    kind, sep, arg = target.partition(":")
    if sep and kind in KINDS:
        if not arg:
            raise ValueError(f"probe target {target!r} has nothing after {kind}:")
        if kind in ("http204", "https") and not arg.startswith(("http://", "https://")):
            raise ValueError(f"probe target {target!r}: the URL must start with http:// or https://")
        if kind == "route" and arg != "default":
            raise ValueError(f"probe target {target!r}: only route:default is known")
        if kind == "peers" and arg != "any" and not (arg.isdigit() and int(arg) > 0):
            raise ValueError(f"probe target {target!r}: use peers:any or peers:N (N >= 1)")
        if kind == "dns":
            _host_port(arg)
        return Probe(target, kind, arg)
    if _is_ip(target):
        return Probe(target, "dns", target)
    if "/" in target or ":" in target or " " in target:
        raise ValueError(f"probe target {target!r}: use a kind prefix ({', '.join(k + ':' for k in KINDS)})")
    return Probe(target, "https", f"https://{target}/")


def _host_port(arg: str) -> tuple[str, int]:
    if _is_ip(arg):  # a bare IPv4 or IPv6 address
        return arg, 53
    host, _, port = arg.rpartition(":")
    host = host.strip("[]")
    if not _is_ip(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"dns probe {arg!r}: give a resolver IP address, optionally :PORT")
    return host, int(port)


# ---------------------------------------------------------------------------- DNS


def dns_query(txid: int, name: str = DNS_PROBE_NAME) -> bytes:
    """A standard recursive A query (RFC 1035 §4.1)."""
    header = struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0)
    qname = b"".join(bytes([len(p)]) + p.encode("ascii") for p in name.rstrip(".").split(".")) + b"\0"
    return header + qname + struct.pack("!HH", 1, 1)


def dns_reply_ok(txid: int, data: bytes) -> bool:
    """A reply to our query: same id, QR set. Any rcode but SERVFAIL/REFUSED shows the
    resolver is reachable and working."""
    if len(data) < 12:
        return False
    rid, flags = struct.unpack("!HH", data[:4])
    return rid == txid and bool(flags & 0x8000) and (flags & 0x000F) not in (2, 5)


class _DnsProtocol(asyncio.DatagramProtocol):
    def __init__(self, txid: int, done: asyncio.Future) -> None:
        self.txid, self.done = txid, done

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.done.done() and dns_reply_ok(self.txid, data):
            self.done.set_result(True)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable on a connected socket
        if not self.done.done():
            self.done.set_exception(exc)


async def probe_dns(arg: str) -> None:
    host, port = _host_port(arg)
    loop = asyncio.get_running_loop()
    txid = int.from_bytes(os.urandom(2), "big")
    done: asyncio.Future = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(lambda: _DnsProtocol(txid, done), remote_addr=(host, port))
    try:
        transport.sendto(dns_query(txid))
        await done
    finally:
        transport.close()


# ---------------------------------------------------------------------------- HTTP


def tls_context(ca_file: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """A client context that verifies the chain and the hostname: the system trust store,
    or only the CA bundle `ca_file` (PEM) when given. OSError/ssl.SSLError for a bad file."""
    ctx = ssl.create_default_context(cafile=os.fspath(ca_file) if ca_file else None)
    # create_default_context already sets both; said again so no later edit can loosen them.
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    return ctx


_system_tls: ssl.SSLContext | None = None


def _default_tls() -> ssl.SSLContext:
    """The system store, loaded once per process (loading it costs a few ms per round)."""
    global _system_tls
    if _system_tls is None:
        _system_tls = tls_context()
    return _system_tls


async def _http(method: str, url: str, timeout: float, tls: ssl.SSLContext | None) -> int:
    import aiohttp

    t = aiohttp.ClientTimeout(total=timeout)
    try:
        async with aiohttp.ClientSession(timeout=t) as session:
            async with session.request(method, url, allow_redirects=False, ssl=tls or _default_tls()) as resp:
                return resp.status
    except aiohttp.ClientConnectorCertificateError as exc:
        # What a captive portal or an intercepting proxy looks like from here.
        why = getattr(exc.certificate_error, "verify_message", None) or exc.certificate_error
        raise ProbeFailed(f"untrusted certificate: {why}"[:200]) from exc
    except aiohttp.ClientSSLError as exc:
        raise ProbeFailed(f"TLS handshake failed: {getattr(exc, 'os_error', None) or exc}"[:200]) from exc
    except aiohttp.ClientConnectorError as exc:
        raise ProbeFailed(connect_error(exc.os_error)) from exc


_CONNECT_WORDS = {errno.ECONNREFUSED: "refused", errno.EHOSTUNREACH: "unreachable",
                  errno.ENETUNREACH: "unreachable", errno.EHOSTDOWN: "unreachable"}


def connect_error(err: OSError) -> str:
    """A short word for why a connect failed: with the link gone, the kernel answers
    EHOSTUNREACH once the neighbour entry has failed, and a probe times out before that."""
    if isinstance(err, (TimeoutError, asyncio.TimeoutError)):
        return "timeout"
    if isinstance(err, socket.gaierror):
        return f"name lookup failed: {err.strerror}"[:200]
    word = _CONNECT_WORDS.get(err.errno or 0)
    if word is not None:
        return word
    return f"connect failed: {err.strerror or type(err).__name__}"[:200]


async def probe_http204(url: str, timeout: float, tls: ssl.SSLContext | None = None) -> None:
    status = await _http("GET", url, timeout, tls)
    if status != 204:
        raise ProbeFailed(f"status {status}, not 204")


async def probe_https(url: str, timeout: float, tls: ssl.SSLContext | None = None) -> None:
    status = await _http("HEAD", url, timeout, tls)
    if not 200 <= status < 400:
        raise ProbeFailed(f"status {status}")


# ---------------------------------------------------------------------------- route


def default_route(route: Path = PROC_ROUTE, route6: Path = PROC_ROUTE6) -> bool:
    """A default route that is up (RTF_UP) in the IPv4 or IPv6 table (not via lo)."""
    try:
        for line in route.read_text().splitlines()[1:]:
            f = line.split()
            if len(f) >= 8 and f[1] == "00000000" and f[7] == "00000000" and int(f[3], 16) & 1:
                return True
    except OSError:
        pass
    try:
        for line in route6.read_text().splitlines():
            f = line.split()
            if len(f) >= 10 and f[0] == "0" * 32 and f[1] == "00" and f[9] != "lo" and int(f[8], 16) & 1:
                return True
    except OSError:
        pass
    return False


async def probe_route(arg: str) -> None:
    if not default_route():
        raise ProbeFailed("no default route")


class ProbeFailed(Exception):
    """The target answered, but not as a working internet does."""


# ---------------------------------------------------------------------------- a round

PeersCount = Callable[[], Awaitable[int]]


async def _probe(p: Probe, timeout: float, peers: PeersCount | None, tls: ssl.SSLContext | None) -> None:
    if p.kind == "dns":
        await probe_dns(p.arg)
    elif p.kind == "http204":
        await probe_http204(p.arg, timeout, tls)
    elif p.kind == "https":
        await probe_https(p.arg, timeout, tls)
    elif p.kind == "route":
        await probe_route(p.arg)
    else:
        need = 1 if p.arg == "any" else int(p.arg)
        have = await peers() if peers is not None else 0
        if have < need:
            raise ProbeFailed(f"{have} verified peer(s), need {need}")


async def run_probe(p: Probe, timeout: float, peers: PeersCount | None = None,
                    tls: ssl.SSLContext | None = None) -> ProbeResult:
    """`tls`: the context for https:// URLs (`tls_context`); None = the system store."""
    t0 = time.perf_counter()
    error: str | None = None
    try:
        await asyncio.wait_for(_probe(p, timeout, peers, tls), timeout)
    except asyncio.TimeoutError:
        error = "timeout"
    except ProbeFailed as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - any failure is the normal input signal
        error = f"{type(exc).__name__}: {exc}"[:200]
    return ProbeResult(p.target, p.kind, error is None, round((time.perf_counter() - t0) * 1000, 1), error)


async def run_round(probes: Sequence[Probe], timeout: float, peers: PeersCount | None = None,
                    tls: ssl.SSLContext | None = None) -> list[ProbeResult]:
    """All probes concurrently; returns after at most ~timeout."""
    return list(await asyncio.gather(*(run_probe(p, timeout, peers, tls) for p in probes)))
