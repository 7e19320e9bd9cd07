"""Progress of blocking work (a thread hashing a file) or of a fetch, as `progress`
frames of a stream.

A Ticker keeps only the latest value, never a queue: a reader that is slower than the
work sees fewer frames, and nothing piles up in memory. The work pushes at most one value
per INTERVAL_SECONDS; the stream sends a frame whenever a new value arrived.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Callable

INTERVAL_SECONDS = 0.1


class Cancelled(Exception):
    """Raised inside the work's progress callback once the caller has gone, so the work
    stops at its next step (and cleans up like after any other failure)."""


class Ticker:
    def __init__(self, interval: float = INTERVAL_SECONDS) -> None:
        self.loop = asyncio.get_running_loop()
        self.interval = interval
        self.value: Any = None
        self.changed = asyncio.Event()
        self.cancelled = False
        self._last = 0.0

    def _due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.interval:
            return False
        self._last = now
        return True

    def from_thread(self, value: Any) -> None:
        """The progress callback of work running in a thread."""
        if self.cancelled:
            raise Cancelled("the caller has gone")
        if self._due():
            self.loop.call_soon_threadsafe(self.set, value)

    def on_loop(self, value: Any) -> None:
        """The progress callback of work running on the event loop."""
        if self._due():
            self.set(value)

    def set(self, value: Any) -> None:
        self.value = value
        self.changed.set()

    async def frames(self, task: asyncio.Future, frame: Callable[[Any], dict[str, Any]]
                     ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """`progress` frames until `task` is done (its result is the caller's to take)."""
        while not task.done():
            waiter = asyncio.ensure_future(self.changed.wait())
            try:
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if self.changed.is_set() and not task.done():
                self.changed.clear()
                yield "progress", frame(self.value)

    def stop(self, task: asyncio.Future) -> None:
        """The stream ended early (the caller left): stop the work."""
        if not task.done():
            self.cancelled = True
            task.cancel()
