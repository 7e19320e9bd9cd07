"""The broker's call counters and latency histogram (README "Metrics")."""
from __future__ import annotations

import pytest

from hearthnet.broker.stats import LATENCY_BUCKETS_MS, MAX_CAPABILITY_LABELS, OTHER, CallMetrics
from hearthnet.errors import HearthNetError
from tests.unit.broker.test_broker import _client, bench, run  # noqa: F401  (bench: a fixture)


def test_results_and_buckets_are_counted_per_capability():
    m = CallMetrics()
    m.record("a", "ok", 0.4)
    m.record("a", "ok", 1.0)  # on a bound: counted in that bucket (Prometheus `le`)
    m.record("a", "timeout", 30_000.0)
    m.record("a", "ok", 10**6)  # past the last bound: +Inf
    snap = m.snapshot()
    assert snap["buckets_ms"] == list(LATENCY_BUCKETS_MS)
    (a,) = snap["capabilities"]
    assert a["capability"] == "a" and a["results"] == {"ok": 3, "timeout": 1}
    assert a["buckets"][0] == 2
    assert a["buckets"][LATENCY_BUCKETS_MS.index(30_000.0)] == 1
    assert a["buckets"][-1] == 1 and sum(a["buckets"]) == 4
    assert a["sum_ms"] == pytest.approx(0.4 + 1.0 + 30_000 + 10**6)


def test_capability_labels_are_bounded():
    m = CallMetrics()
    for i in range(MAX_CAPABILITY_LABELS + 50):
        m.record(f"cap.{i}", "ok", 1.0)
    caps = {c["capability"]: c for c in m.snapshot()["capabilities"]}
    assert len(caps) == MAX_CAPABILITY_LABELS + 1
    assert caps[OTHER]["results"] == {"ok": 50}


def test_broker_counts_calls_and_errors_and_labels_only_known_names(bench):  # noqa: F811
    bench.worker("slow_00")
    bench.wait_ready("slow_00")

    async def go():
        bc = await _client(bench)
        try:
            for _ in range(3):
                await bc.call("experimental.slow", "1.0", {"input": {}})
            for name in ("made.up.one", "made.up.two"):  # a caller's invented names
                with pytest.raises(HearthNetError):
                    await bc.call(name, "1.0", {})
            return await bc.admin("metrics")
        finally:
            await bc.close()

    snap = run(go())
    caps = {c["capability"]: c for c in snap["capabilities"]}
    assert set(caps) == {"experimental.slow", OTHER}
    assert caps["experimental.slow"]["results"] == {"ok": 3}
    assert sum(caps["experimental.slow"]["buckets"]) == 3
    assert caps[OTHER]["results"] == {"not_found": 2}
