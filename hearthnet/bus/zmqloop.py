"""A DEALER socket driven straight from the asyncio loop, for the per-call hot path.

pyzmq's zmq.asyncio wraps every send and recv in futures; at thousands of calls a second
that bookkeeping costs more than the messaging itself. Here the loop watches the socket's
file descriptor and a callback drains every queued message; sends are plain non-blocking
sends (the high-water mark is off, so they never block). ZeroMQ's descriptor is
edge-triggered, so after every send we check for input that arrived meanwhile.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import zmq

from hearthnet.bus import protocol as P

log = logging.getLogger("hearthnet.zmqloop")
_EVENTS, _POLLIN, _NOBLOCK = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.NOBLOCK)


class LoopDealer:
    def __init__(self, endpoint: str, on_message: Callable[[dict[str, Any]], None],
                 linger_ms: int = 0) -> None:
        self.on_message = on_message
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, linger_ms)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.connect(endpoint)
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.sock.getsockopt(zmq.FD), self._readable)
        self._drain_scheduled = False
        self._draining = False
        self.loop.call_soon(self._drain)

    def send(self, msg: dict[str, Any]) -> None:
        self.sock.send(P.pack(msg), _NOBLOCK)
        # The send may have swallowed the read edge: look for input again soon. Not when
        # the send comes from a handler run by _drain, whose loop looks again anyway.
        if not self._drain_scheduled and not self._draining:
            self._drain_scheduled = True
            self.loop.call_soon(self._drain)

    def _readable(self) -> None:
        """The descriptor fired: most often a message is there, so try a recv first
        (a failed one is the rare case); the rest as _drain."""
        self._drain(first=True)

    def _drain(self, first: bool = False) -> None:
        self._drain_scheduled = False
        self._draining = True
        try:
            self._read_all(first)
        finally:
            self._draining = False

    def _read_all(self, first: bool) -> None:
        sock = self.sock
        # EVENTS before each recv, not recv until Again: a drain here mostly finds zero or
        # one message (one after each send, to catch a swallowed edge), and pyzmq's Again
        # costs twice a getsockopt. Only when the descriptor fired is the first recv tried
        # blind.
        while not sock.closed:  # a handler may close it
            if first:
                first = False
                try:
                    data = sock.recv(_NOBLOCK)
                except zmq.Again:
                    return
            elif sock.getsockopt(_EVENTS) & _POLLIN:
                data = sock.recv(_NOBLOCK)
            else:
                return
            try:
                msg = P.unpack(data)
            except Exception as exc:  # msgpack raises several types; drop the frame
                log.warning("malformed frame dropped", extra={"reason": str(exc)})
                continue
            self.on_message(msg)

    def close(self) -> None:
        if not self.sock.closed:
            self.loop.remove_reader(self.sock.getsockopt(zmq.FD))
            self.sock.close()
