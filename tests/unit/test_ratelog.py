"""hearthnet.ratelog: one line per key per interval, a bounded key table."""
from __future__ import annotations

import logging

from hearthnet.ratelog import RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_one_line_per_key_per_interval_then_the_count(caplog):
    clock = Clock()
    rl = RateLimitedLog(logging.getLogger("t.ratelog"), interval=60, clock=clock)
    caplog.set_level(logging.WARNING, "t.ratelog")
    assert rl.warning("peer:a", "bad %s", "x")
    assert not rl.warning("peer:a", "bad %s", "x")
    assert not rl.warning("peer:a", "bad %s", "x")
    assert rl.warning("peer:b", "bad %s", "y")
    clock.t = 61
    assert rl.warning("peer:a", "bad %s", "x")
    assert [r.getMessage() for r in caplog.records] == ["bad x", "bad y", "bad x (2 similar lines suppressed)"]


def test_the_key_table_stays_bounded_under_a_flood_of_new_keys():
    clock = Clock()
    rl = RateLimitedLog(logging.getLogger("t.ratelog.flood"), interval=60, clock=clock, max_keys=100)
    for i in range(10_000):
        rl.warning(f"peer:{i}", "bad")
        clock.t += 0.001
    assert len(rl._last) <= 100 and len(rl._suppressed) <= 100
