"""Log lines that hostile or broken input could otherwise repeat without bound (LAN
traffic, peer replies, broker frames): one line per key per interval."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

MAX_KEYS = 4096  # keys are peer-chosen (addresses, node ids): the table must stay bounded


class RateLimitedLog:
    """At most one line per `key` per `interval` seconds; the next line that gets through
    says how many were suppressed, so nothing is silently lost from the count."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS) -> None:
        self._log = logger
        self._interval = interval
        self._clock = clock
        self._max_keys = max_keys
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args: object, **kwargs: Any) -> bool:
        """Log `msg % args` unless `key` was logged within the interval; True if logged.
        `kwargs` go to the logger (exc_info, extra)."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        if last is None and len(self._last) >= self._max_keys:
            self._forget(now)
        self._last[key] = now
        dropped = self._suppressed.pop(key, 0)
        suffix = f" ({dropped} similar lines suppressed)" if dropped else ""
        self._log.warning(msg + suffix, *args, **kwargs)
        return True

    def _forget(self, now: float) -> None:
        """Drop keys whose interval is over; if all are recent (a flood of new keys),
        drop the oldest half: a flood may then log again, but memory stays bounded."""
        stale = [k for k, t in self._last.items() if now - t >= self._interval]
        if len(stale) < len(self._last) // 2:
            stale = sorted(self._last, key=self._last.__getitem__)[: len(self._last) // 2]
        for k in stale:
            self._last.pop(k, None)
            self._suppressed.pop(k, None)
