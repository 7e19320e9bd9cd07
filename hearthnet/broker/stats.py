"""Per-provider health windows (spec core-bus-transport §5) and the call trace ring."""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from hearthnet.constants import (
    HEALTH_QUARANTINE_SECONDS,
    HEALTH_QUARANTINE_THRESHOLD,
    HEALTH_WINDOW_CALLS,
    TRACE_RING_BUFFER,
)

MIN_SAMPLES_TO_QUARANTINE = 4  # a young provider is not judged on one or two failures
from hearthnet.logs import rfc3339_ms


@dataclass
class Health:
    """Sliding window of the last HEALTH_WINDOW_CALLS (success, latency) samples, and the
    quarantine of spec §5: success rate under 0.5 → 60 s out of routing; the first call
    after that is a probe (success resets the history, failure re-quarantines)."""

    samples: deque = field(default_factory=lambda: deque(maxlen=HEALTH_WINDOW_CALLS))
    quarantined_until: float = 0.0
    probing: bool = False

    def record(self, ok: bool, ms: float, now: float = 0.0) -> bool:
        """Add a sample; True when this sample put the provider into quarantine."""
        if self.probing and now >= self.quarantined_until:
            self.probing = False
            if ok:
                self.samples.clear()
            else:
                self.quarantined_until = now + HEALTH_QUARANTINE_SECONDS
                return True
        self.samples.append((ok, ms))
        if (len(self.samples) >= MIN_SAMPLES_TO_QUARANTINE
                and self.success_rate() < HEALTH_QUARANTINE_THRESHOLD
                and self.quarantined_until <= now):
            self.quarantined_until = now + HEALTH_QUARANTINE_SECONDS
            self.probing = True
            return True
        return False

    def quarantined(self, now: float) -> bool:
        return now < self.quarantined_until

    def _latencies(self) -> list[float]:
        return sorted(ms for ok, ms in self.samples if ok)

    def p50(self) -> float | None:
        lat = self._latencies()
        return lat[len(lat) // 2] if lat else None

    def p99(self) -> float | None:
        lat = self._latencies()
        return lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None

    def success_rate(self) -> float:
        if not self.samples:
            return 1.0
        return sum(1 for ok, _ in self.samples if ok) / len(self.samples)


TRACE_FIELDS = ("ts", "trace_id", "capability", "version", "caller", "route", "worker",
                "result", "ms", "tokens_in", "tokens_out", "redispatched")


class TraceRing:
    """The last TRACE_RING_BUFFER calls, with route, result, latency and tokens. Records
    are stored as tuples in TRACE_FIELDS order and turned into dicts only when read."""

    def __init__(self, size: int = TRACE_RING_BUFFER) -> None:
        self._ring: deque[tuple] = deque(maxlen=size)

    def add(self, record: tuple) -> None:
        self._ring.append(record)

    def recent(self, n: int = 50, capability: str | None = None) -> list[dict[str, Any]]:
        items = [t for t in self._ring if capability is None or t[2] == capability]
        items = items[-n:] if n > 0 else []
        out = []
        for t in items:
            d = dict(zip(TRACE_FIELDS, t))
            d["ts"] = rfc3339_ms(d["ts"])
            out.append(d)
        return out

    def __len__(self) -> int:
        return len(self._ring)
