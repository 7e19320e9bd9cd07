"""Hostile clients of a node's peer port, for tests and bench/peer_abuse.py. Loopback
only, bounded in count and time by the caller.

Attackers connect from their own loopback addresses (127.0.0.2 and up: Linux routes all
of 127/8 to `lo`), as they would from their own machines on a LAN; the member under test
connects from 127.0.0.1.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import ssl
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import aiohttp

from hearthnet.identity import keys
from hearthnet.transport.signing import sign_request

HALF_REQUEST = (b"POST /bus/v1/call HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\nX-HearthNet-Capability: experimental.echo\r\n")  # no blank line


def attacker_address(i: int) -> str:
    return f"127.0.{2 + i // 250}.{2 + i % 250}"


def raise_own_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, need))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


_TLS: ssl.SSLContext | None = None


def _client_tls() -> ssl.SSLContext:
    """One shared context: building one loads the CA store (tens of ms each)."""
    global _TLS
    if _TLS is None:
        _TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        _TLS.check_hostname = False
        _TLS.verify_mode = ssl.CERT_NONE
    return _TLS


@dataclass
class SlowStats:
    opened: int = 0  # TLS connections with a half-sent request
    refused: int = 0  # closed by the node before or during the handshake
    cut: int = 0  # closed by the node after the half request was sent
    holding: int = 0  # open right now

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


async def slow_connection(host: str, port: int, source: str, stats: SlowStats,
                          reconnect_after: float | None) -> None:
    """One half-sent TLS request, held until the node closes it; again after
    `reconnect_after` seconds if given."""
    ctx = _client_tls()
    while True:
        writer = None
        try:
            reader, writer = await asyncio.open_connection(host, port, ssl=ctx, local_addr=(source, 0),
                                                           ssl_handshake_timeout=10)
            writer.write(HALF_REQUEST)
            await writer.drain()
            stats.opened += 1
            stats.holding += 1
            try:
                await reader.read()  # until the node closes it
            finally:
                stats.holding -= 1
            stats.cut += 1
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            stats.refused += 1
        finally:
            if writer is not None:
                writer.transport.abort()
        if reconnect_after is None:
            return
        await asyncio.sleep(reconnect_after)


async def slow_connections(host: str, port: int, n: int, *, per_address: int = 50,
                           reconnect_after: float | None = None,
                           stats: SlowStats | None = None) -> tuple[SlowStats, list[asyncio.Task[None]]]:
    """Start n slow connections, `per_address` per source address; returns at once with
    the tasks (cancel them to stop)."""
    raise_own_fd_limit(n + 256)
    stats = stats or SlowStats()
    tasks = [asyncio.ensure_future(slow_connection(host, port, attacker_address(i // per_address), stats,
                                                   reconnect_after))
             for i in range(n)]
    return stats, tasks


@dataclass
class FloodStats:
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"statuses": {str(k): v for k, v in sorted(self.statuses.items())}, "errors": self.errors}


async def non_member_flood(host: str, port: int, target_node_id: str, community_id: str, *,
                           concurrency: int = 32, source: str = "127.0.1.250",
                           stats: FloodStats | None = None) -> FloodStats:
    """Validly signed calls from a stranger (a fresh key, not a member), as fast as the
    node answers, until cancelled."""
    stats = stats or FloodStats()
    stranger = keys.generate()
    raw = json.dumps({"params": {}, "input": {"x": 1}}).encode()
    connector = aiohttp.TCPConnector(ssl=_client_tls(), limit=concurrency, local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            while True:
                headers = sign_request(stranger, community_id, "experimental.echo", "1.0", raw,
                                       to=target_node_id)
                headers["Content-Type"] = "application/json"
                try:
                    async with session.post(f"https://{host}:{port}/bus/v1/call", data=raw,
                                            headers=headers) as resp:
                        await resp.read()
                        stats.statuses[resp.status] += 1
                except (aiohttp.ClientError, OSError, TimeoutError):
                    stats.errors += 1
                    await asyncio.sleep(0.05)

        await asyncio.gather(*[worker() for _ in range(concurrency)])
    return stats


async def huge_anonymous_bodies(host: str, port: int, n: int = 48, size: int = 16 * 1024 * 1024,
                                source: str = "127.0.1.251") -> Counter[str]:
    """n anonymous POSTs with `size`-byte bodies at once; what each got back (an HTTP
    status, or the connection error when the node closed it mid-body)."""
    body = b"[" + b"0," * ((size - 2) // 2) + b"0]"
    connector = aiohttp.TCPConnector(ssl=_client_tls(), limit=n, local_addr=(source, 0))
    outcomes: Counter[str] = Counter()
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one() -> None:
            try:
                async with session.post(f"https://{host}:{port}/bus/v1/call", data=body,
                                        headers={"Content-Type": "application/json",
                                                 "X-HearthNet-Capability": "experimental.echo"},
                                        timeout=aiohttp.ClientTimeout(total=60)) as resp:
                    await resp.read()
                    outcomes[str(resp.status)] += 1
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                outcomes[type(exc).__name__] += 1

        await asyncio.gather(*[one() for _ in range(n)])
    return outcomes


async def member_large_bodies(host: str, port: int, member: keys.KeyPair, target_node_id: str,
                              community_id: str, *, n: int = 40, size: int = 8 * 1024 * 1024,
                              hold_ms: int = 0, per_second: float = 6.0,
                              source: str = "127.0.0.1") -> Counter[str]:
    """n signed `experimental.echo` calls from a member, started `per_second` a second
    (under the member's 10/s limit per capability) and all in flight together, each with
    a body of about `size` bytes (the echo worker keeps each `hold_ms`). Outcomes:
    "200", "<status>:<error code>" for a contract error reply whose signature by the
    target checks out ("…:unsigned" if it does not), or the connection error's name."""
    from hearthnet.transport.signing import verify_response

    filler = "x" * max(0, size - 64)
    connector = aiohttp.TCPConnector(ssl=_client_tls(), limit=n, local_addr=(source, 0))
    outcomes: Counter[str] = Counter()
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one(i: int) -> None:
            await asyncio.sleep(i / per_second)
            raw = json.dumps({"params": {}, "input": {"i": i, "sleep_ms": hold_ms, "data": filler}}).encode()
            headers = sign_request(member, community_id, "experimental.echo", "1.0", raw, to=target_node_id)
            headers["Content-Type"] = "application/json"
            try:
                async with session.post(f"https://{host}:{port}/bus/v1/call", data=raw, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=120)) as resp:
                    data = await resp.read()
                    if resp.status == 200:
                        outcomes["200"] += 1
                        return
                    body = json.loads(data)
                    try:
                        verify_response(resp.headers, body, expected_from=target_node_id,
                                        request_id=headers["X-HearthNet-Request-Id"], status=resp.status)
                        outcomes[f"{resp.status}:{body.get('error')}"] += 1
                    except Exception:
                        outcomes[f"{resp.status}:{body.get('error')}:unsigned"] += 1
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                outcomes[_failure(exc)] += 1

        await asyncio.gather(*[one(i) for i in range(n)])
    return outcomes


# --------------------------------------------------------------------------- as a process


def _failure(exc: BaseException) -> str:
    """A connection failure's class, with the OS error under it when there is one."""
    os_error = getattr(exc, "os_error", None) or (exc if isinstance(exc, OSError) else None)
    if isinstance(os_error, OSError) and os_error.errno is not None:
        import errno

        return f"{type(exc).__name__}:{errno.errorcode.get(os_error.errno, os_error.errno)}"
    return type(exc).__name__


async def large_bodies(host: str, port: int, target_node_id: str, community_id: str, *,
                       members: list[keys.KeyPair], body_mib: float, per_second: float,
                       hold_ms: int, seconds: float) -> dict[str, Any]:
    """Each member sends signed `body_mib` MiB calls, `per_second` a second, for about
    `seconds`, from its own source address (127.0.3.x: members are other machines, and
    the port's per-address connection cap is not what is measured); what they got back,
    summed over the members."""
    n = max(1, int(seconds * per_second))
    runs = await asyncio.gather(*[member_large_bodies(host, port, m, target_node_id, community_id, n=n,
                                                      size=int(body_mib * 1024 * 1024), hold_ms=hold_ms,
                                                      per_second=per_second, source=f"127.0.3.{10 + i}")
                                  for i, m in enumerate(members)])
    total: Counter[str] = Counter()
    for r in runs:
        total.update(r)
    return dict(total)


async def attack(host: str, port: int, target_node_id: str, community_id: str, *, slow: int,
                 flood_concurrency: int, seconds: float) -> dict[str, Any]:
    """`slow` half-sent requests (each reconnecting a second after the node cuts it) and
    a stranger's signed flood, for `seconds`; the counts of both."""
    slow_stats, tasks = await slow_connections(host, port, slow, reconnect_after=1.0)
    flood_stats = FloodStats()
    flood = asyncio.ensure_future(non_member_flood(host, port, target_node_id, community_id,
                                                   concurrency=flood_concurrency, stats=flood_stats))
    try:
        await asyncio.sleep(seconds)
    finally:
        for t in (*tasks, flood):
            t.cancel()
        await asyncio.gather(*tasks, flood, return_exceptions=True)
    return {"slow": slow_stats.as_dict(), "flood": flood_stats.as_dict()}


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="attack a node's peer port (loopback only)")
    ap.add_argument("port", type=int)
    ap.add_argument("target_node_id")
    ap.add_argument("community_id")
    ap.add_argument("--slow", type=int, default=1000)
    ap.add_argument("--flood", type=int, default=32, help="concurrent stranger requests")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--member-keys", action="append", default=[],
                    help="large bodies instead: a member's keys dir (repeat for more members)")
    ap.add_argument("--body-mib", type=float, default=7.0)
    ap.add_argument("--bodies-per-second", type=float, default=4.0, help="per member (limit 10)")
    ap.add_argument("--hold-ms", type=int, default=1000, help="the echo worker keeps each call")
    args = ap.parse_args(argv)
    if args.member_keys:
        from pathlib import Path

        out = asyncio.run(large_bodies(
            "127.0.0.1", args.port, args.target_node_id, args.community_id,
            members=[keys.load(Path(d)) for d in args.member_keys[:16]],
            body_mib=min(args.body_mib, 16.0), per_second=min(args.bodies_per_second, 9.0),
            hold_ms=min(args.hold_ms, 10_000), seconds=min(args.seconds, 600)))
        print(json.dumps(out), flush=True)
        return
    out = asyncio.run(attack("127.0.0.1", args.port, args.target_node_id, args.community_id,
                             slow=min(args.slow, 5000), flood_concurrency=min(args.flood, 64),
                             seconds=min(args.seconds, 600)))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()


def wait_until_member(node: Any, member: keys.KeyPair, timeout: float = 30) -> None:
    """Block until `node` (a testing.nodes.Node) serves `member`'s signed requests: its
    gateway's membership view may trail the ledger briefly after a join."""
    import time

    from hearthnet.transport.client import PeerClient
    from hearthnet.transport.pinning import PinStore
    from hearthnet.errors import HearthNetError

    status = node.api("/api/v1/status")
    target, community = status["node"]["node_id"], status["community"]["community_id"]

    async def poll() -> None:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            async with PeerClient(member, community, PinStore(Path(tmp) / "pins.json")) as client:
                deadline = time.monotonic() + timeout
                while True:
                    try:  # membership is checked first: a member learns the probe does not exist
                        await client.call(target, ("127.0.0.1", node.port), "hearthnet.member_probe", "1.0", {})
                    except HearthNetError as exc:
                        if exc.code == "not_found":
                            return
                        if time.monotonic() > deadline:
                            raise
                    await asyncio.sleep(0.2)

    asyncio.run(poll())


@contextlib.contextmanager
def member_pair(root: Path, env: dict[str, str] | None = None) -> Iterator[tuple[Any, Any]]:
    """Founder A running with the echo worker (and `env`), B joined by invite and served
    as a member by A (B itself need not run: tests speak with its key); both cleaned up."""
    from hearthnet.testing.nodes import Node, join_by_invite, key_of

    a, b = Node(root / "a", "a"), Node(root / "b", "b")
    a.env.update({"HEARTHNET_WORKERS_ECHO": "true", **(env or {})})
    try:
        a.init()
        a.start(wait_workers=("broker", "gateway", "ledger", "echo"))
        join_by_invite(a, b)
        wait_until_member(a, key_of(b))
        yield a, b
    finally:
        a.cleanup()
        b.cleanup()
