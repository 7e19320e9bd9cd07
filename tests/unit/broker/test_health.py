"""The provider health window (hearthnet/broker/stats.py Health): the failure count it
keeps per sample agrees with a recount of the window, through evictions and probes."""
from __future__ import annotations

import random

from hearthnet.broker.stats import Health
from hearthnet.constants import HEALTH_QUARANTINE_SECONDS, HEALTH_WINDOW_CALLS


def test_kept_failure_count_matches_the_window() -> None:
    rng = random.Random(7)
    h = Health()
    now = 0.0
    for _ in range(20 * HEALTH_WINDOW_CALLS):
        now += rng.random() * 5
        h.record(rng.random() < 0.7, 1.0, now)
        assert h._fails == sum(1 for ok, _ in h.samples if not ok)


def test_quarantine_when_success_falls_under_half_then_probe() -> None:
    h = Health()
    for i in range(HEALTH_WINDOW_CALLS):
        assert h.record(True, 1.0, 0.0) is False
    entered = [h.record(False, 1.0, 1.0) for _ in range(HEALTH_WINDOW_CALLS)]
    assert entered.count(True) == 1 and h.quarantined(2.0)
    assert h.success_rate() < 0.5
    # the first call after the quarantine is a probe: success clears the history
    assert h.record(True, 1.0, 1.0 + HEALTH_QUARANTINE_SECONDS) is False
    assert list(h.samples) == [(True, 1.0)] and h._fails == 0 and not h.quarantined(2.0 + HEALTH_QUARANTINE_SECONDS)
