from __future__ import annotations

from hearthnet.transport.ratelimit import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def burst(rl: RateLimiter, n: int, peer: str = "p", cap: str = "llm.chat"):
    return [rl.check(peer, cap) for _ in range(n)]


def test_soft_limit_per_capability_answers_429_with_retry_after():
    clock = FakeClock()
    rl = RateLimiter(clock=clock)
    assert all(c.allowed and not c.soft_exceeded for c in burst(rl, 10))
    over = rl.check("p", "llm.chat")
    assert over.allowed and over.soft_exceeded and 0 < over.retry_after_ms <= 100
    assert not rl.check("p", "embed.text").soft_exceeded  # other capability: own bucket
    assert not rl.check("q", "llm.chat").soft_exceeded  # other peer: own buckets
    clock.t += over.retry_after_ms / 1000
    assert not rl.check("p", "llm.chat").soft_exceeded  # refilled
    assert rl.limited_total == 1


def test_hard_limit_per_capability_drops():
    clock = FakeClock()
    rl = RateLimiter(clock=clock)
    checks = burst(rl, 101)
    assert all(c.allowed for c in checks[:100])
    assert sum(c.soft_exceeded for c in checks[:100]) == 90  # 429s still spend hard tokens
    assert not checks[100].allowed and rl.dropped_total == 1
    clock.t += 1.0
    assert rl.check("p", "llm.chat").allowed


def test_soft_total_per_peer():
    rl = RateLimiter(clock=FakeClock())
    for i in range(10):
        assert not any(c.soft_exceeded for c in burst(rl, 10, cap=f"experimental.c{i}"))
    assert rl.check("p", "experimental.other").soft_exceeded
    assert not rl.check("q", "experimental.other").soft_exceeded


def test_hard_total_per_peer():
    rl = RateLimiter(clock=FakeClock())
    for i in range(10):
        assert all(c.allowed for c in burst(rl, 100, cap=f"experimental.c{i}"))
    assert not rl.check("p", "experimental.fresh").allowed


def test_tokens_refill_continuously_and_cap_at_one_second():
    clock = FakeClock()
    rl = RateLimiter(clock=clock)
    burst(rl, 10)
    clock.t += 0.35  # 3.5 tokens back
    assert [c.soft_exceeded for c in burst(rl, 4)] == [False, False, False, True]
    clock.t += 3600  # idle for an hour: still only one second of burst
    assert sum(not c.soft_exceeded for c in burst(rl, 20)) == 10


def test_bucket_maps_are_bounded():
    rl = RateLimiter(clock=FakeClock(), max_keys=50)
    for i in range(500):
        rl.check("p", f"experimental.c{i}")
    assert len(rl._soft_cap._map) <= 50
