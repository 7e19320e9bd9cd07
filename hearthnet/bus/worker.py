"""Connects one Service to the broker: READY with its descriptors, a heartbeat every
second, one asyncio task per request, cancellation and deadlines (DESIGN.md §4).

`workers/<name>.py` builds a Service and calls `run_service(...)`; everything a worker
process does beyond its service's logic lives here.
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import signal
import time
from typing import Any

from hearthnet.bus import protocol as P
from hearthnet.bus.flow import Credit
from hearthnet.constants import HEARTBEAT_INTERVAL_SECONDS
from hearthnet.errors import HearthNetError
from hearthnet.bus.service import Capability, Request, Service
from hearthnet.bus.zmqloop import LoopDealer

log = logging.getLogger("hearthnet.worker")

DRAIN_SECONDS = 3.0  # on SIGTERM, let in-flight calls finish this long


class WorkerRuntime:
    def __init__(self, service: Service, endpoint: str, worker_name: str) -> None:
        self.service = service
        self.endpoint = endpoint
        self.name = worker_name
        self.caps: dict[str, Capability] = {}
        self.tasks: dict[int, asyncio.Task] = {}
        self.credits: dict[int, Credit] = {}  # flow control of the streams being served
        self.stopping = asyncio.Event()
        self.dealer: LoopDealer | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.service.start()
        self.caps = {c.name: c for c in self.service.capabilities()}
        if hasattr(self.service, "announce_changes"):  # a service whose descriptors change at run time
            self.service.announce_changes = self.refresh_capabilities
        self.dealer = LoopDealer(self.endpoint, self._on_message, linger_ms=500)
        await self._announce()
        from hearthnet.process import trim_heap

        trim_heap()  # started: what that freed goes back to the system (process.py)
        beat = asyncio.create_task(self._heartbeat())
        await self.stopping.wait()
        # Graceful stop: take no new work, let running calls finish for a while, then
        # leave; the broker re-dispatches whatever is still unanswered (DESIGN.md §4).
        self.dealer.on_message = self._on_message_while_stopping
        self._emit({"t": P.DRAIN})
        if self.tasks:
            await asyncio.wait(list(self.tasks.values()), timeout=DRAIN_SECONDS)
        beat.cancel()
        self._emit({"t": P.BYE})
        self.dealer.close()
        await self.service.stop()

    async def _announce(self) -> None:
        self._emit({"t": P.READY, "worker": self.name, "service": self.service.name,
                          "pid": os.getpid(), "caps": [c.descriptor() for c in self.caps.values()],
                          "note": self._note()})
        log.info("announced", extra={"caps": sorted(self.caps)})

    def refresh_capabilities(self) -> None:
        """The service's descriptors changed (e.g. the rag worker holds a new corpus):
        READY again on the same connection, which the broker takes as an update."""
        self.caps = {c.name: c for c in self.service.capabilities()}
        if self.dealer is not None:
            asyncio.ensure_future(self._announce())

    def _note(self) -> str | None:
        note = self.service.health().get("note")
        return str(note) if note else None

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL_SECONDS)
            self._emit({"t": P.HB, "note": self._note()})

    def _on_message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("t")
        if kind == P.REQ:
            self._start(msg)
        elif kind == P.ACK:
            credit = self.credits.get(msg.get("id"))
            if credit is not None:
                credit.ack(msg.get("upto"))
        elif kind == P.CANCEL:
            task = self.tasks.get(msg.get("id"))
            if task is not None:
                task.cancel()
        elif kind == P.WHO:
            asyncio.ensure_future(self._announce())

    def _on_message_while_stopping(self, msg: dict[str, Any]) -> None:
        if msg.get("t") == P.REQ:  # crossed our DRAIN: hand it back for another worker
            self.dealer.send({"t": P.REJECT, "id": msg["id"]})
        else:
            self._on_message(msg)

    def _start(self, msg: dict[str, Any]) -> None:
        """Call the handler at once. A plain handler that returns its answer (a dict) is
        answered here, with no task: the cheap calls (an echo, a lookup in memory) pay no
        scheduling. Whatever else it returns (a coroutine, a stream) runs in a task."""
        rid = msg["id"]
        # The broker owns the deadline: past it, it answers `timeout` and sends CANCEL,
        # which cancels the task. `req.deadline` lets a handler plan (e.g. stop early).
        body = msg.get("body")
        req = Request(capability=msg["cap"], version=str(msg.get("v", "1.0")),
                      body=body if isinstance(body, dict) else {},
                      stream=bool(msg.get("stream")), caller=str(msg.get("caller", "")),
                      trace_id=str(msg.get("trace", "")),
                      deadline=time.monotonic() + float(msg.get("ttl") or 30.0))
        cap = self.caps.get(req.capability)
        try:
            if cap is None:
                raise HearthNetError("not_found", f"{self.name} does not serve {req.capability}")
            result = cap.handler(req)
        except Exception as exc:
            self._fail(rid, req, exc)
            return
        if result.__class__ is dict:
            self._end(rid, P.RESULT, result)
            return
        task = self.tasks[rid] = asyncio.get_running_loop().create_task(self._serve(rid, req, result))
        task.add_done_callback(functools.partial(self._served, rid, result))

    def _served(self, rid: int, result: Any, task: asyncio.Task) -> None:
        self.tasks.pop(rid, None)
        if task.cancelled():  # cancelled before it ever ran (CANCEL right behind its REQ)
            if inspect.iscoroutine(result):
                result.close()  # never awaited: close it quietly
            self._end(rid, P.ERROR, P.error_body("cancelled", "cancelled by the caller"))

    async def _serve(self, rid: int, req: Request, result: Any) -> None:
        try:
            if inspect.isawaitable(result):
                result = await result
            if isinstance(result, dict):
                self._end(rid, P.RESULT, result)
            else:
                await self._stream(rid, result)
        except asyncio.CancelledError:
            self._end(rid, P.ERROR, P.error_body("cancelled", "cancelled by the caller"))
        except Exception as exc:
            self._fail(rid, req, exc)

    def _fail(self, rid: int, req: Request, exc: Exception) -> None:
        if isinstance(exc, HearthNetError):
            self._end(rid, P.ERROR, exc.to_wire())
            return
        log.error("handler crashed", extra={"capability": req.capability}, exc_info=exc)
        self._end(rid, P.ERROR, P.error_body(
            "internal_error", f"{req.capability} failed; see the {self.name} log"))

    async def _stream(self, rid: int, result: Any) -> None:
        done: dict[str, Any] | None = None
        credit = self.credits[rid] = Credit()
        frames = result.__aiter__()
        try:
            while True:
                # Pull the next frame only when the reader has room for it: a generator
                # reading a file is paused at its `yield` while the window is full.
                await credit.wait()
                try:
                    event, data = await frames.__anext__()
                except StopAsyncIteration:
                    break
                if event == P.DONE:
                    done = data
                    break
                self._emit({"t": P.FRAME, "id": rid, "ev": event, "d": data})
                credit.sent_one()
        finally:
            self.credits.pop(rid, None)
            aclose = getattr(result, "aclose", None)
            if aclose is not None:
                await aclose()
        self._end(rid, P.DONE, done or {})

    def _end(self, rid: int, ev: str, data: Any) -> None:
        self._emit({"t": P.END, "id": rid, "ev": ev, "d": data})

    def _emit(self, msg: dict[str, Any]) -> None:
        if self.dealer is not None and not self.dealer.sock.closed:
            self.dealer.send(msg)  # after BYE, answers of cancelled calls go nowhere


def run_service(service: Service, endpoint: str, worker_name: str) -> None:
    asyncio.run(WorkerRuntime(service, endpoint, worker_name).run())


def serve_from_config(component: str, build: Any) -> None:
    """A service worker's whole main(): config and logging (start_process), the service
    built from the config by `build(cfg)`, then served until stopped. A HearthNetError
    while building (no key, no community, a store it cannot open) is one plain log line
    and exit 1, so supervisord marks the program FATAL instead of looping."""
    import sys

    from hearthnet.errors import HearthNetError
    from hearthnet.process import start_process

    cfg, log, name = start_process(component)
    try:
        service = build(cfg)
    except HearthNetError as exc:
        log.error(exc.message, extra={"code": exc.code})
        sys.exit(1)
    run_service(service, cfg.paths.broker_workers_endpoint, name)
