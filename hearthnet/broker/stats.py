"""Per-provider health windows (spec core-bus-transport §5) and the call trace ring."""
from __future__ import annotations

import time
from bisect import bisect_left
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
    _fails: int = 0  # failures among `samples`, kept by record()

    def record(self, ok: bool, ms: float, now: float = 0.0) -> bool:
        """Add a sample; True when this sample put the provider into quarantine."""
        if self.probing and now >= self.quarantined_until:
            self.probing = False
            if ok:
                self.samples.clear()
                self._fails = 0
            else:
                self.quarantined_until = now + HEALTH_QUARANTINE_SECONDS
                return True
        samples = self.samples
        if len(samples) == samples.maxlen and not samples[0][0]:
            self._fails -= 1  # the oldest sample, a failure, drops out of the window
        samples.append((ok, ms))
        if not ok:
            self._fails += 1
        # Every call records here: the failure count is kept, not recounted over the window.
        if (self._fails and len(samples) >= MIN_SAMPLES_TO_QUARANTINE
                and 1 - self._fails / len(samples) < HEALTH_QUARANTINE_THRESHOLD
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


# Latency buckets of every call (upper bounds in ms, Prometheus `le`): from a sub-ms local
# echo to an LLM generation's 120 s deadline.
LATENCY_BUCKETS_MS = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
                      5000.0, 10000.0, 30000.0, 60000.0, 120000.0)
MAX_CAPABILITY_LABELS = 256  # beyond that, calls count under OTHER (labels stay few)
OTHER = "other"


class _CapCounts:
    __slots__ = ("results", "buckets", "sum_ms")

    def __init__(self) -> None:
        self.results: dict[str, int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)  # the last one is +Inf
        self.sum_ms = 0.0


class CallMetrics:
    """Cumulative counts since the broker started, per capability: calls by result (`ok`
    or an error code) and a latency histogram. Recorded where a call completes (the
    trace); read by the gateway's /metrics through the broker's `metrics` admin op.
    The caller passes label values it trusts (known capability names and error codes):
    a peer chooses the names it calls, so cardinality is bounded here too."""

    def __init__(self) -> None:
        self.caps: dict[str, _CapCounts] = {}

    def record(self, cap: str, result: str, ms: float) -> None:
        c = self.caps.get(cap)
        if c is None:
            if len(self.caps) >= MAX_CAPABILITY_LABELS:
                cap = OTHER
            c = self.caps.get(cap) or self.caps.setdefault(cap, _CapCounts())
        c.results[result] = c.results.get(result, 0) + 1
        c.buckets[bisect_left(LATENCY_BUCKETS_MS, ms)] += 1
        c.sum_ms += ms

    def snapshot(self) -> dict[str, Any]:
        """{buckets_ms, capabilities: [{capability, results, buckets (not cumulative,
        +Inf last), sum_ms}]}: msgpack-ready."""
        return {"buckets_ms": list(LATENCY_BUCKETS_MS), "capabilities": [
            {"capability": name, "results": dict(c.results), "buckets": list(c.buckets),
             "sum_ms": round(c.sum_ms, 3)} for name, c in sorted(self.caps.items())]}
