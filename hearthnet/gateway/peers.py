"""Remote capabilities (DESIGN.md §4): each verified peer becomes a provider in the broker.

For every peer the discovery worker reports, the gateway opens one DEALER on the broker's
worker socket and announces the peer's manifest capabilities as a *remote* worker
(`peer:<short id>`). The broker then routes, scores, retries and quarantines remote
providers exactly like local ones; a call routed here leaves through the PeerClient
(HTTPS, pinned certificate, signed headers) and its answer or SSE frames come back the
same way a local worker's would.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

from hearthnet import validate
from hearthnet.bus import protocol as P
from hearthnet.bus.flow import Credit
from hearthnet.constants import (
    HEARTBEAT_INTERVAL_SECONDS,
    LLM_GENERATION_DEFAULT_TIMEOUT_SECONDS,
    RPC_DEFAULT_TIMEOUT_SECONDS,
)
from hearthnet.errors import HearthNetError
from hearthnet.bus.zmqloop import LoopDealer
from hearthnet.ratelog import RateLimitedLog

log = logging.getLogger("hearthnet.gateway.peers")
_badlog = RateLimitedLog(log, interval=300.0)  # one line per peer and problem

# A manifest lists name/version/params/max_concurrent only; what a retry may assume comes
# from the contract's capability list (core-bus-transport §1): these are safe to repeat.
IDEMPOTENT = {"embed.text", "rag.query", "rag.list_corpora", "file.read", "file.list",
              "market.list", "market.search", "chat.history", "experimental.echo"}
# Timeouts the contract sets per capability (spec svc-market-chat-file §3.5); the rest get
# RPC_DEFAULT_TIMEOUT_SECONDS (llm.* the generation default).
CONTRACT_TIMEOUTS = {"file.read": 300, "file.list": 5, "file.advertise": 5, "file.put": 600}


def remote_descriptor(cap: Any) -> dict[str, Any]:
    """The broker descriptor of one capability in a peer's manifest; PeerDataError when
    the entry does not have the contract's shape (hearthnet.validate)."""
    validate.manifest_capability(cap)
    name = cap["name"]
    return {
        "name": name, "version": cap["version"],
        "stability": cap["stability"], "schema_hash": cap["schema_hash"],
        "params": cap["params"], "max_concurrent": cap["max_concurrent"],
        "trust_required": "member",
        "timeout_seconds": CONTRACT_TIMEOUTS.get(name, LLM_GENERATION_DEFAULT_TIMEOUT_SECONDS
                                                 if name.startswith("llm.") else RPC_DEFAULT_TIMEOUT_SECONDS),
        "idempotent": name in IDEMPOTENT,
    }


def remote_descriptors(peer: dict[str, Any]) -> list[dict[str, Any]]:
    """The valid capabilities of a peer's manifest; a bad entry is logged (once per peer
    and problem) and skipped, the others are still offered."""
    out = []
    for cap in (peer.get("manifest") or {}).get("capabilities") or []:
        try:
            out.append(remote_descriptor(cap))
        except validate.PeerDataError as exc:
            _badlog.warning(f"cap:{peer['node_id']}:{exc.message[:60]}", "peer %s: capability skipped: %s",
                            peer["node_id"], exc.message)
    return out


class PeerProxy:
    """One peer node as a remote worker of our broker."""

    def __init__(self, endpoint: str, client: Any, peer: dict[str, Any]) -> None:
        self.endpoint = endpoint
        self.client = client  # transport.client.PeerClient
        self.peer = peer
        self.dealer: LoopDealer | None = None
        self.tasks: dict[int, asyncio.Task] = {}
        self.credits: dict[int, Credit] = {}  # flow control of the streams being forwarded
        self._beat: asyncio.Task | None = None

    @property
    def name(self) -> str:
        return f"peer:{self.peer['node_id_short']}"

    def _address(self) -> dict[str, Any]:
        return self.peer["endpoint"]

    async def start(self) -> None:
        self.dealer = LoopDealer(self.endpoint, self._on_message)
        self._announce()
        self._beat = asyncio.ensure_future(self._heartbeat())

    def update(self, peer: dict[str, Any]) -> None:
        self.peer = peer
        self._announce()  # same connection: the broker refreshes the caps in place

    async def close(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
        for task in list(self.tasks.values()):
            task.cancel()
        if self.dealer is not None:
            self._send({"t": P.BYE})
            self.dealer.close()

    def _announce(self) -> None:
        caps = remote_descriptors(self.peer)
        self._send({"t": P.READY, "worker": self.name, "service": "remote", "pid": os.getpid(),
                    "remote": True, "node_id": self.peer["node_id"], "caps": caps,
                    "note": f"{self.peer.get('display_name', '')} via {self.peer.get('source', '?')}"})

    def _send(self, msg: dict[str, Any]) -> None:
        if self.dealer is None or self.dealer.sock.closed:
            return
        try:
            self.dealer.send(msg)
        except (ValueError, TypeError, OverflowError) as exc:  # the peer's data msgpack cannot encode
            if msg.get("t") not in (P.FRAME, P.END):
                raise
            _badlog.warning(f"reply:{self.peer['node_id']}", "peer %s: reply not forwarded: %s",
                            self.peer["node_id"], exc)
            self.dealer.send({"t": P.END, "id": msg["id"], "ev": P.ERROR, "d": P.error_body(
                "internal_error", f"{self.name} answered with data that cannot be forwarded")})

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL_SECONDS)
            self._send({"t": P.HB})

    def _on_message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("t")
        if kind == P.REQ:
            self.tasks[msg["id"]] = asyncio.ensure_future(self._serve(msg))
        elif kind == P.ACK:
            credit = self.credits.get(msg.get("id"))
            if credit is not None:
                credit.ack(msg.get("upto"))
        elif kind == P.CANCEL:
            task = self.tasks.get(msg.get("id"))
            if task is not None:
                task.cancel()
        elif kind == P.WHO:
            self._announce()

    async def _serve(self, msg: dict[str, Any]) -> None:
        rid = msg["id"]
        try:
            if msg.get("stream"):
                await self._forward_stream(rid, msg)
            else:
                result = await self.client.call(self.peer["node_id"], self._address(), msg["cap"],
                                                str(msg.get("v", "1.0")), msg.get("body"),
                                                timeout=float(msg.get("ttl") or 30))
                self._end(rid, P.RESULT, result)
        except asyncio.CancelledError:
            self._end(rid, P.ERROR, P.error_body("cancelled", "cancelled by the caller"))
        except HearthNetError as exc:
            self._end(rid, P.ERROR, exc.to_wire())
        finally:
            self.tasks.pop(rid, None)

    async def _forward_stream(self, rid: int, msg: dict[str, Any]) -> None:
        """The peer's SSE frames into our broker, read only as fast as our reader takes
        them: while the window is full nothing is read from the connection, so TCP holds
        the peer's gateway back, and through its bus credits the peer's worker."""
        frames = self.client.stream(self.peer["node_id"], self._address(), msg["cap"],
                                    str(msg.get("v", "1.0")), msg.get("body"),
                                    timeout=float(msg.get("ttl") or 120))
        credit = self.credits[rid] = Credit()
        try:
            async with contextlib.aclosing(frames):
                while True:
                    await credit.wait()
                    try:
                        event, data = await frames.__anext__()
                    except StopAsyncIteration:
                        break
                    if event in (P.DONE, P.ERROR):
                        self._end(rid, event, data)
                        return
                    self._send({"t": P.FRAME, "id": rid, "ev": event, "d": data})
                    credit.sent_one()
        finally:
            self.credits.pop(rid, None)
        self._end(rid, P.DONE, {})

    def _end(self, rid: int, ev: str, data: Any) -> None:
        self._send({"t": P.END, "id": rid, "ev": ev, "d": data})


class PeerProxies:
    """All peer proxies of this node, kept in step with the discovery worker's events."""

    def __init__(self, endpoint: str, client: Any) -> None:
        self.endpoint = endpoint
        self.client = client
        self.proxies: dict[str, PeerProxy] = {}

    async def apply(self, kind: str, peer: Any) -> bool:
        """Follow one peer event; never raises on a malformed peer record: it is logged
        once and ignored (False), and the next event is applied as usual."""
        try:
            validate.peer_record(peer, kind)
        except validate.PeerDataError as exc:
            who = peer.get("node_id") if isinstance(peer, dict) else None
            who = who if isinstance(who, str) else "unknown peer"
            _badlog.warning(f"peer:{who[:80]}:{exc.message[:60]}", "peer event for %s ignored: %s",
                            who[:80], exc.message)
            return False
        node_id = peer["node_id"]
        proxy = self.proxies.get(node_id)
        if kind == "removed":
            if proxy is not None:
                del self.proxies[node_id]
                await proxy.close()
                log.info("peer removed", extra={"peer": node_id})
        elif proxy is None:
            proxy = self.proxies[node_id] = PeerProxy(self.endpoint, self.client, peer)
            await proxy.start()
            log.info("peer added", extra={"peer": node_id, "source": peer.get("source")})
        else:
            proxy.update(peer)
        return True

    async def close(self) -> None:
        for proxy in list(self.proxies.values()):
            await proxy.close()
        self.proxies.clear()
