"""Live updates on the local API: `GET /api/v1/subscribe?topic=T[&topic=U…][&since=TOKEN]`
answers Server-Sent Events (issue 9 point 1; README "Live updates").

The durable truth is the event log; this is a view of it. Each stream is one ledger
subscription (`community.log.subscribe` with `with_seq`, and `after_seq` when the client
resumes), so the ledger does the catch-up and the live part in one place and every
event with a seq past the token comes exactly once, in this node's storage order:

    retry: 2000
    event: subscribed
    id: <token>                       the position the stream starts at
    data: {"topics": [...], "resume": "<token>"}

    event: <topic>                    the first requested topic the event belongs to
    id: <seq>                         its resume token
    data: <the signed event envelope>

    event: emergency.mode             (topic emergency.mode: local, no id:) the detector's state
    data: {"mode", "online", "since", ...}   first the current one, then each change of mode;
                                      {"mode": null, "online": null} while no detector runs

    : keep-alive                      every HEARTBEAT_SECONDS of silence

    event: error                      last frame when the stream ends on our side
    data: {"error": code, "message": …, "resume": "<last token sent>"}

Bounds: frames wait for the client in a queue of LIVE_QUEUE in the gateway; when it is
full the gateway stops reading the ledger's stream, so a slow reader costs the gateway at
most that queue (plus the bus's stream window). A catch-up then simply goes at the
client's pace; live events wait in the ledger's backlog for this subscriber (10 000),
and a client that falls further behind gets the error frame `capacity_exceeded` (it
resumes with Last-Event-ID and gets what it missed from the log). A reader that takes
nothing for the bus's stall timeout has its connection aborted.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import OrderedDict
from typing import Any, AsyncIterator

from aiohttp import web

from hearthnet.bus import flow
from hearthnet.errors import HearthNetError
from hearthnet.gateway import topics as T
from hearthnet.transport.sse import dumps_bytes

log = logging.getLogger("hearthnet.gateway.live")
ROUTE = "/api/v1/subscribe"
LIVE_QUEUE = 1000  # frames held for one slow client before its stream is ended
HEARTBEAT_SECONDS = 15.0
RETRY_MS = 2000  # what EventSource clients wait before reconnecting
SUBSCRIPTION_SECONDS = 24 * 3600  # the ledger's bound on one subscription; clients resume after
AUTHOR_CACHE = 10_000  # message id -> author, for receipt topics (events never change)
LOOKUP_TIMEOUT_SECONDS = 5.0
AUTHORS_KEY = web.AppKey("live_authors", dict)


def install(app: web.Application, gw: Any) -> None:
    """Add the route to the local API app (never to the peer API: owner only)."""
    app[AUTHORS_KEY] = OrderedDict()
    app.router.add_get(ROUTE, functools.partial(subscribe, gw))


def frame(event: str, data: Any, token: int | None = None) -> bytes:
    head = b"event: " + event.encode() + b"\n"
    if token is not None:
        head += b"id: " + str(token).encode() + b"\n"
    return head + b"data: " + dumps_bytes(data) + b"\n\n"


def resume_token(request: web.Request) -> int | None:
    """Last-Event-ID (what EventSource sends on reconnect) wins over `since=`."""
    header = request.headers.get("Last-Event-ID")
    return T.parse_token(header if header and header.strip() else request.query.get("since"))


async def subscribe(gw: Any, request: web.Request) -> web.StreamResponse:
    wanted = T.parse_topics(request.query.getall("topic", []))
    after = resume_token(request)
    inp: dict[str, Any] = {"with_seq": True}
    if after is not None:
        inp["after_seq"] = after
    types = T.event_types(wanted)
    if types is not None:
        inp["event_types"] = types
    frames = gw.bus.stream("community.log.subscribe", "1.0", {"params": {}, "input": inp},
                           caller=gw.kp.node_id_full, timeout=SUBSCRIPTION_SECONDS, local_only=True)
    async with contextlib.aclosing(frames):
        name, first = await frames.__anext__()
        if name == "error":  # refused before anything streamed: a plain HTTP error
            raise HearthNetError.from_wire(first)
        if name != "subscribed" or not isinstance(first.get("seq"), int):
            raise HearthNetError("internal_error", "the ledger's subscription did not start")
        stream = LiveStream(gw, request, wanted, first["seq"], request.app[AUTHORS_KEY])
        return await stream.run(frames)


class LiveStream:
    """One client: a pump from the ledger subscription into a bounded queue, and a
    writer from the queue to the socket (with heartbeats)."""

    def __init__(self, gw: Any, request: web.Request, wanted: list[T.Topic], start: int,
                 authors: "OrderedDict[str, str]", queue_size: int | None = None,
                 heartbeat: float | None = None) -> None:
        self.gw, self.request, self.wanted = gw, request, wanted
        self.last = start  # the token of the last frame written
        self.authors = authors
        self.queue_size = queue_size or LIVE_QUEUE
        self.heartbeat = heartbeat or HEARTBEAT_SECONDS
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=self.queue_size)

    async def run(self, frames: AsyncIterator[tuple[str, Any]]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(self.request)
        pump = asyncio.ensure_future(self._pump(frames))
        modes = asyncio.ensure_future(self._mode_pump()) if any(t.local for t in self.wanted) else None
        try:
            hello = {"topics": [t.name for t in self.wanted], "resume": str(self.last)}
            if await self._write(resp, f"retry: {RETRY_MS}\n".encode() + frame("subscribed", hello, self.last)):
                await self._write_loop(resp)
        except ConnectionError:
            log.debug("live client went away")
        finally:
            for task in (pump, modes):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        return resp

    async def _write_loop(self, resp: web.StreamResponse) -> None:
        while True:
            try:
                item = await asyncio.wait_for(self.queue.get(), self.heartbeat)
            except asyncio.TimeoutError:
                if not await self._write(resp, b": keep-alive\n\n"):
                    return
                continue
            if item[0] == "end":  # the pump stopped: say why, then close
                body = dict(item[1], resume=str(self.last))
                await self._write(resp, frame("error", body))
                return
            topic, seq, ev = item
            if not await self._write(resp, frame(topic, ev, seq)):
                return
            if seq is not None:  # local frames carry no resume token
                self.last = seq

    async def _write(self, resp: web.StreamResponse, chunk: bytes) -> bool:
        """False (connection aborted) when the client took nothing for the stall timeout."""
        try:
            await asyncio.wait_for(resp.write(chunk), flow.stall_seconds())
            return True
        except asyncio.TimeoutError:
            if self.request.transport is not None:
                self.request.transport.abort()
            return False

    async def _pump(self, frames: AsyncIterator[tuple[str, Any]]) -> None:
        """Ledger frames → matching (topic, seq, envelope) in the queue, then the end
        mark when the subscription ends. A full queue stops the pump, which holds the
        ledger's stream back (the bus's credit window): stored events (a catch-up) are
        then read no faster than the client takes them, and live ones wait in the
        ledger's per-subscriber backlog, whose overflow ends the subscription with
        `capacity_exceeded` — the error frame this client gets."""
        end: dict[str, Any]
        try:
            async for name, data in frames:
                if name == "error":
                    end = {"error": data.get("error", "internal_error"), "message": data.get("message", "")}
                    break
                if name != "event" or not isinstance(data, dict):
                    continue
                seq, ev = data.get("seq"), data.get("event")
                topic = await self._topic(ev) if isinstance(ev, dict) else None
                if topic is not None and isinstance(seq, int):
                    await self.queue.put((topic, seq, ev))  # full: hold the ledger back
            else:
                end = {"error": "unavailable", "message": "the ledger ended the subscription; reconnect"}
        except HearthNetError as exc:
            end = {"error": exc.code, "message": exc.message}
        except Exception:  # noqa: BLE001 - the client gets an error frame and resumes
            log.exception("live subscription failed")
            end = {"error": "internal_error", "message": "the live feed failed; reconnect"}
        await self.queue.put(("end", end))

    async def _mode_pump(self) -> None:
        """The local topic emergency.mode: this node's detector (`emergency.watch`, a
        self capability), never the ledger and never a peer."""
        from hearthnet.emergency.follow import follow_mode

        async def put(mode: str | None, state: dict[str, Any]) -> None:
            await self.queue.put((T.MODE, None, dict(state, mode=mode, online=None if mode is None else mode == "online")))

        await follow_mode(self.gw.bus, put, caller=self.gw.kp.node_id_full)

    async def _topic(self, ev: dict[str, Any]) -> str | None:
        target = T.receipt_target(ev)
        author = None
        if target is not None and any(t.needs_target_author for t in self.wanted):
            author = await self._author_of(target)
        return T.match(self.wanted, ev, author)

    async def _author_of(self, event_id: str) -> str | None:
        """The author of a stored event (cached; a receipt's target is stored before it)."""
        if event_id in self.authors:
            self.authors.move_to_end(event_id)
            return self.authors[event_id]
        try:
            out = await self.gw.bus.call("community.log.events", "1.0",
                                         {"params": {}, "input": {"ids": [event_id]}},
                                         caller=self.gw.kp.node_id_full, timeout=LOOKUP_TIMEOUT_SECONDS,
                                         local_only=True)
        except HearthNetError as exc:
            log.warning("could not look up a receipt's message", extra={"code": exc.code})
            return None
        found = (out.get("output") or {}).get("events") or []
        author = found[0].get("author") if found and isinstance(found[0], dict) else None
        if isinstance(author, str):
            self.authors[event_id] = author
            while len(self.authors) > AUTHOR_CACHE:
                self.authors.popitem(last=False)
        return author
