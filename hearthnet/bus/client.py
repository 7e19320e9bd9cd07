"""The broker's client side, used by the gateway (and benchmarks): many concurrent calls
multiplexed over one DEALER socket, each answered through a future or a frame queue.

A stream's queue holds at most one flow-control window of frames (hearthnet/bus/flow.py):
frames are acknowledged as the caller takes them from `stream()`, not as they arrive, so
a caller that is slow to iterate holds its producer back instead of filling memory."""
from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any, AsyncIterator

import zmq

from hearthnet.bus import protocol as P
from hearthnet.bus.flow import Acker
from hearthnet.errors import HearthNetError
from hearthnet.bus.zmqloop import LoopDealer

log = logging.getLogger("hearthnet.busclient")


class BusClient:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.dealer: LoopDealer | None = None
        self.pending: dict[int, asyncio.Future | asyncio.Queue] = {}
        self._ids = itertools.count(1)

    async def start(self) -> None:
        self.dealer = LoopDealer(self.endpoint, self._on_message)

    async def close(self) -> None:
        if self.dealer is not None:
            self.dealer.close()

    def _on_message(self, msg: dict[str, Any]) -> None:
        waiter = self.pending.get(msg.get("id"))
        if waiter is None:
            return
        if isinstance(waiter, asyncio.Queue):
            waiter.put_nowait(msg)
            if msg.get("t") == P.END:
                self.pending.pop(msg["id"], None)
        elif not waiter.done():
            self.pending.pop(msg["id"], None)
            waiter.set_result(msg)

    def _send(self, msg: dict[str, Any]) -> None:
        assert self.dealer is not None, "BusClient.start() was not awaited"
        try:
            self.dealer.send(msg)
        except P.EncodeError:  # e.g. a peer's body holds an int msgpack cannot carry: bad_request
            self.pending.pop(msg.get("id"), None)  # nobody will answer it
            raise

    async def call(self, cap: str, version: str, body: Any, *, caller: str = "", trace: str = "",
                   timeout: float | None = None, local_only: bool = False,
                   node: str | None = None) -> dict[str, Any]:
        """A non-stream call: the response body, or HearthNetError with the wire code.
        `node` (a full node id) targets that node's providers only: a peer's proxy, or
        this node's own workers when it is our id."""
        msg = await self._unary(cap, version, body, caller, trace, timeout, local_only, node)
        return msg.get("d") or {}

    async def call_from(self, cap: str, version: str, body: Any, *, caller: str = "", trace: str = "",
                        timeout: float | None = None, local_only: bool = False,
                        node: str | None = None) -> tuple[dict[str, Any], str]:
        """`call`, plus the full id of the node that served it (ours for a local worker;
        "" from a broker that does not say)."""
        msg = await self._unary(cap, version, body, caller, trace, timeout, local_only, node)
        served_by = msg.get("node")
        return msg.get("d") or {}, served_by if isinstance(served_by, str) else ""

    async def _unary(self, cap: str, version: str, body: Any, caller: str, trace: str,
                     timeout: float | None, local_only: bool, node: str | None) -> dict[str, Any]:
        """The broker's END of one non-stream call; HearthNetError when it is an error."""
        cid = next(self._ids)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self.pending[cid] = fut
        self._send({"t": P.CALL, "id": cid, "cap": cap, "v": version, "body": body,
                    "stream": False, "caller": caller, "trace": trace, "timeout": timeout,
                    "local_only": local_only, "node": node})
        try:
            msg = await fut
        except asyncio.CancelledError:
            await self._cancel(cid)
            raise
        if msg.get("ev") == P.ERROR:
            raise HearthNetError.from_wire(msg.get("d") or {})
        return msg

    async def stream(self, cap: str, version: str, body: Any, *, caller: str = "",
                     trace: str = "", timeout: float | None = None, local_only: bool = False,
                     node: str | None = None) -> AsyncIterator[tuple[str, Any]]:
        """Yields (event, data) frames; the last one is ("done", meta) or ("error", body).
        Leaving the iteration early (or being cancelled) cancels the call. A frame counts
        as consumed once the caller asks for the next one: write it out before that, and
        the producer runs at the pace of whoever reads it (flow control)."""
        cid = next(self._ids)
        queue: asyncio.Queue = asyncio.Queue()  # bounded by the window the broker enforces
        self.pending[cid] = queue
        self._send({"t": P.CALL, "id": cid, "cap": cap, "v": version, "body": body,
                          "stream": True, "caller": caller, "trace": trace, "timeout": timeout,
                          "local_only": local_only, "node": node})
        finished = False
        acker = Acker()
        try:
            while True:
                msg = await queue.get()
                if msg.get("t") == P.END:
                    finished = True
                    ev = msg.get("ev")
                    yield (P.ERROR if ev == P.ERROR else P.DONE), msg.get("d") or {}
                    return
                yield msg.get("ev"), msg.get("d")
                upto = acker.consumed()  # the caller came back for more: that one is done
                if upto is not None:
                    self._send({"t": P.ACK, "id": cid, "upto": upto})
        finally:
            if not finished:
                await self._cancel(cid)

    async def _cancel(self, cid: int) -> None:
        self.pending.pop(cid, None)
        try:
            self._send({"t": P.CANCEL, "id": cid})
        except zmq.ZMQError as exc:
            log.warning("could not send cancel", extra={"reason": str(exc)})

    async def admin(self, op: str, **args: Any) -> dict[str, Any]:
        cid = next(self._ids)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self.pending[cid] = fut
        self._send({"t": P.ADMIN, "id": cid, "op": op, "args": args})
        try:
            msg = await asyncio.wait_for(fut, timeout=5.0)
        except asyncio.TimeoutError:
            self.pending.pop(cid, None)
            raise HearthNetError("partition", "the broker did not answer") from None
        if msg.get("ev") == P.ERROR:
            raise HearthNetError.from_wire(msg.get("d") or {})
        return msg.get("d") or {}
