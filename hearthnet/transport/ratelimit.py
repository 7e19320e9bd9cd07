"""Per-peer rate limits (spec core-bus-transport §7).

Token buckets per (peer, capability) and per peer in total, each holding one second of
burst. Every request spends a *hard* token (100/s per capability, 1000/s total); without
one it is dropped silently (`allowed=False`: log, count, no answer). A request that got
its hard token then needs a *soft* token (10/s per capability, 100/s total); without one
the gateway answers 429 `rate_limited` with `retry_after_ms`. Refused requests still
spend hard tokens, so a peer that ignores 429s ends up dropped.

The limits are the spec's interop constants (RATE_LIMIT_* in core-identity-config §11).
Bucket maps are LRU-bounded: capability names come from (authenticated) peers, so they
must not grow without bound; forgetting an idle bucket merely refills it.
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Hashable

RATE_LIMIT_SOFT_RPS_PER_CAP = 10
RATE_LIMIT_HARD_RPS_PER_CAP = 100
RATE_LIMIT_SOFT_RPS_TOTAL = 100
RATE_LIMIT_HARD_RPS_TOTAL = 1000
MAX_BUCKET_KEYS = 10_000


@dataclass(frozen=True)
class RateCheck:
    allowed: bool  # False: drop without answering
    soft_exceeded: bool  # True (with allowed): answer 429 rate_limited
    retry_after_ms: int = 0


@dataclass
class TokenBucket:
    rate: float  # tokens per second; capacity is one second's worth
    tokens: float
    stamp: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.rate, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now

    def has_token(self) -> bool:
        return self.tokens >= 1.0

    def wait_ms(self) -> int:
        """Milliseconds until one token is available (0 if one is)."""
        return 0 if self.has_token() else math.ceil((1.0 - self.tokens) / self.rate * 1000)


class _Buckets:
    def __init__(self, rate: float, max_keys: int) -> None:
        self.rate, self.max_keys = rate, max_keys
        self._map: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def get(self, key: Hashable, now: float) -> TokenBucket:
        bucket = self._map.get(key)
        if bucket is None:
            bucket = self._map[key] = TokenBucket(self.rate, self.rate, now)
            if len(self._map) > self.max_keys:
                self._map.popitem(last=False)
        else:
            self._map.move_to_end(key)
            bucket.refill(now)
        return bucket


class RateLimiter:
    def __init__(self, *, soft_per_cap: float = RATE_LIMIT_SOFT_RPS_PER_CAP,
                 hard_per_cap: float = RATE_LIMIT_HARD_RPS_PER_CAP,
                 soft_total: float = RATE_LIMIT_SOFT_RPS_TOTAL,
                 hard_total: float = RATE_LIMIT_HARD_RPS_TOTAL,
                 clock: Callable[[], float] = time.monotonic,
                 max_keys: int = MAX_BUCKET_KEYS) -> None:
        self.clock = clock
        self._soft_cap = _Buckets(soft_per_cap, max_keys)
        self._hard_cap = _Buckets(hard_per_cap, max_keys)
        self._soft_total = _Buckets(soft_total, max_keys)
        self._hard_total = _Buckets(hard_total, max_keys)
        self.dropped_total = 0  # for hearthnet_rate_limited_total{kind="hard"}
        self.limited_total = 0  # for hearthnet_rate_limited_total{kind="soft"}

    def check(self, peer: str, capability: str) -> RateCheck:
        now = self.clock()
        hard = (self._hard_cap.get((peer, capability), now), self._hard_total.get(peer, now))
        if not all(b.has_token() for b in hard):
            self.dropped_total += 1
            return RateCheck(allowed=False, soft_exceeded=True, retry_after_ms=max(b.wait_ms() for b in hard))
        for b in hard:
            b.tokens -= 1.0
        soft = (self._soft_cap.get((peer, capability), now), self._soft_total.get(peer, now))
        if not all(b.has_token() for b in soft):
            self.limited_total += 1
            return RateCheck(allowed=True, soft_exceeded=True, retry_after_ms=max(b.wait_ms() for b in soft))
        for b in soft:
            b.tokens -= 1.0
        return RateCheck(allowed=True, soft_exceeded=False, retry_after_ms=0)
