"""Stream flow control: a credit window per stream (core-bus-transport §7).

The producer of a stream (a worker serving a Service's async generator, or a peer proxy
forwarding a remote node's SSE) may have at most `window` frames that the final reader
has not consumed yet; it pulls the next frame from its generator only when there is
room (`Credit.wait`). The consumer (`BusClient.stream`) counts the frames its caller has
taken and acknowledges every `every` of them, or sooner when it is slow (`Acker`):
`ack {"upto": N}` = "N frames of this stream consumed", relayed client -> broker ->
worker. The broker checks that no producer exceeds the window (`BrokerWindow`), so every
hop holds at most one window of each stream.

A reader that takes no frame while the window is full for the stall timeout gets the
stream ended with `timeout`; a reader that is merely slow keeps going, however slow, as
long as it takes a frame now and then (with 256 KiB chunks and the default 60 s: faster
than ~6 KB/s).
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from hearthnet.constants import (
    STREAM_ACK_EVERY_FRAMES,
    STREAM_ACK_TIMEOUT_SECONDS,
    STREAM_STALL_TIMEOUT_SECONDS,
    STREAM_WINDOW_FRAMES,
)
from hearthnet.errors import HearthNetError

_stall_seconds = STREAM_STALL_TIMEOUT_SECONDS


def configure(stall_seconds: float) -> None:
    """The node's `bus.stream_stall_seconds` (called once per process by start_process)."""
    global _stall_seconds
    _stall_seconds = float(stall_seconds)


def stall_seconds() -> float:
    return _stall_seconds


class Credit:
    """The producer's side of one stream: frames sent and frames the reader consumed."""

    def __init__(self, window: int = STREAM_WINDOW_FRAMES) -> None:
        self.window = window
        self.sent = 0
        self.acked = 0
        self._moved = asyncio.Event()

    def open(self) -> bool:
        return self.sent - self.acked < self.window

    def sent_one(self) -> None:
        self.sent += 1

    def ack(self, upto: Any) -> None:
        """The reader consumed `upto` frames; stale, repeated or impossible acks (more than
        was sent) are ignored."""
        if isinstance(upto, int) and not isinstance(upto, bool) and self.acked < upto <= self.sent:
            self.acked = upto
            self._moved.set()

    async def wait(self, stall: float | None = None) -> None:
        """Return when one more frame may be sent. HearthNetError `timeout` when the reader
        took no frame for `stall` seconds while the window was full (every ack restarts
        the clock, so a slow reader never hits it)."""
        stall = stall_seconds() if stall is None else stall
        while not self.open():
            self._moved.clear()
            try:
                await asyncio.wait_for(self._moved.wait(), stall)
            except asyncio.TimeoutError:
                raise HearthNetError("timeout", f"the reader took no frame for {stall:g} s; "
                                     "stream ended") from None


class Acker:
    """The consumer's side: call `consumed()` each time the caller has taken a frame; it
    returns the `upto` to acknowledge, else None. Every `every` frames, or sooner when
    `max_delay` seconds passed since the last ack: a reader that spends long over each
    frame acks each one, so its producer sees it is consuming (it is only cut when it
    consumes nothing for the stall timeout)."""

    def __init__(self, every: int = STREAM_ACK_EVERY_FRAMES, max_delay: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # Well inside the producer's stall timeout, whatever the node configured.
        self.max_delay = min(STREAM_ACK_TIMEOUT_SECONDS, stall_seconds() / 4) if max_delay is None else max_delay
        self.every, self.clock = every, clock
        self.consumed_frames = 0
        self.acked = 0
        self.acked_at = clock()

    def consumed(self) -> int | None:
        self.consumed_frames += 1
        now = self.clock()
        if self.consumed_frames - self.acked < self.every and now - self.acked_at < self.max_delay:
            return None
        self.acked, self.acked_at = self.consumed_frames, now
        return self.acked


class BrokerWindow:
    """The broker's view of one call's stream: frames forwarded to the client, frames the
    client consumed, and where the current worker's frames started (a call re-dispatched
    to another worker starts that worker's count at 0)."""

    __slots__ = ("forwarded", "acked", "base")

    def __init__(self) -> None:
        self.forwarded = 0
        self.acked = 0
        self.base = 0

    def dispatched(self) -> None:
        """A worker takes the call: its frame count starts here."""
        self.base = self.forwarded

    def in_flight(self) -> int:
        """Frames of the current worker not yet consumed (what its own window counts)."""
        return (self.forwarded - self.base) - max(0, self.acked - self.base)

    def full(self, window: int = STREAM_WINDOW_FRAMES) -> bool:
        return self.in_flight() >= window

    def ack(self, upto: Any) -> int | None:
        """The client's ack; the worker-relative `upto` to relay, or None (nothing new)."""
        if not (isinstance(upto, int) and not isinstance(upto, bool) and self.acked < upto <= self.forwarded):
            return None
        self.acked = upto
        rel = upto - self.base
        return rel if rel > 0 else None
