"""Log lines that hostile or broken LAN traffic could otherwise repeat without bound."""
from __future__ import annotations

import logging
import time
from typing import Callable


class RateLimitedLog:
    """At most one line per `key` per `interval` seconds; the next line that gets through
    says how many were suppressed, so nothing is silently lost from the count."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args: object) -> bool:
        """Log `msg % args` unless `key` was logged within the interval; True if logged."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        dropped = self._suppressed.pop(key, 0)
        suffix = f" ({dropped} similar lines suppressed)" if dropped else ""
        self._log.warning(msg + suffix, *args)
        return True
