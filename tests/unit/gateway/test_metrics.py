"""The /metrics collector on a fake snapshot, parsed back with prometheus_client's parser."""
from __future__ import annotations

import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families

from hearthnet.broker.stats import CallMetrics
from hearthnet.gateway import metrics
from hearthnet.sync import SyncResult

NOW = 1_800_000_000.0


def _snapshot() -> dict:
    calls = CallMetrics()
    for ms in (0.5, 3.0, 40.0):
        calls.record("experimental.echo", "ok", ms)
    calls.record("experimental.echo", "bad_request", 0.7)
    peer = {"node_id": "B" * 52, "node_id_short": "BBBB-BBBB", "source": "manual"}
    return {
        "now": NOW, "version": "0.1.0", "community": "C1", "broker_ok": True,
        "calls": calls.snapshot(),
        "capabilities": [
            {"name": "experimental.echo", "local": True, "in_flight": 2, "max_concurrent": 64,
             "success_rate": 0.75},
            {"name": "llm.chat", "local": False, "in_flight": 1, "max_concurrent": 2, "success_rate": 1.0}],
        "workers": [{"name": "echo_00", "program": "echo", "healthy": True, "restarts": 2,
                     "uptime_seconds": 12, "served": 3, "errors": 1},
                    {"name": "gateway", "program": "gateway", "healthy": True, "restarts": 0,
                     "uptime_seconds": 40, "served": 0, "errors": 0}],
        "mesh": {"peers": {peer["node_id"]: peer},
                 "offered": {peer["node_id"]: ("added", peer),
                             "X" * 52: ("added", {"node_id": "X" * 52, "source": "udp"})},
                 "last_sync": {peer["node_id"]: SyncResult(peer=peer["node_id"], ok=False, received=0,
                                                           at=NOW - 5)},
                 "last_ok": {peer["node_id"]: NOW - 65}},
        "event_log": {"head": 41, "count": 40}, "event_log_bytes": 123_456,
        "blob_store": {"blobs": 3, "complete": 2, "pinned": 1, "store_bytes": 999,
                       "capacity_bytes": 10_000, "free_bytes": 5_000},
        "emergency": {"mode": "degraded", "peers_reachable": 1},
        "members": 2, "log_lines_dropped": 4, "uptime_seconds": 40,
    }


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_collector_exports_every_source():
    s = _samples(metrics.render(_snapshot()).decode())
    echo = (("capability", "experimental.echo"),)
    assert s[("hearthnet_requests_total", (("capability", "experimental.echo"), ("result", "ok")))] == 3
    assert s[("hearthnet_requests_total", (("capability", "experimental.echo"), ("result", "bad_request")))] == 1
    assert s[("hearthnet_request_duration_seconds_count", echo)] == 4
    assert s[("hearthnet_request_duration_seconds_bucket", (*echo, ("le", "0.001")))] == 2
    assert s[("hearthnet_request_duration_seconds_bucket", (*echo, ("le", "0.005")))] == 3
    assert s[("hearthnet_request_duration_seconds_bucket", (*echo, ("le", "+Inf")))] == 4
    assert abs(s[("hearthnet_request_duration_seconds_sum", echo)] - 0.0442) < 1e-9
    assert s[("hearthnet_in_flight", (("capability", "llm.chat"), ("provider", "remote")))] == 1
    assert s[("hearthnet_worker_restarts_total", (("program", "echo"), ("worker", "echo_00")))] == 2
    assert s[("hearthnet_peers", (("source", "manual"), ("state", "member")))] == 1
    assert s[("hearthnet_peers", (("source", "udp"), ("state", "refused")))] == 1
    assert s[("hearthnet_peer_sync_age_seconds", (("peer", "BBBB-BBBB"),))] == 65
    assert s[("hearthnet_peer_sync_ok", (("peer", "BBBB-BBBB"),))] == 0
    assert s[("hearthnet_sync_lag_seconds", ())] == 65
    assert s[("hearthnet_event_log_size", (("community", "C1"),))] == 40
    assert s[("hearthnet_event_log_bytes", (("community", "C1"),))] == 123_456
    assert s[("hearthnet_blob_storage_bytes", ())] == 999
    assert s[("hearthnet_blobs_pinned", ())] == 1
    assert s[("hearthnet_emergency_mode", (("state", "degraded"),))] == 1
    assert s[("hearthnet_emergency_mode", (("state", "online"),))] == 0
    assert s[("hearthnet_log_lines_dropped_total", (("component", "gateway"),))] == 4
    assert s[("hearthnet_source_up", (("source", "ledger"),))] == 1


def test_sources_that_did_not_answer_are_left_out_not_zero():
    snap = dict(_snapshot(), broker_ok=False, calls=None, capabilities=[], event_log=None,
                event_log_bytes=None, blob_store=None, emergency=None, members=None)
    s = _samples(metrics.render(snap).decode())
    assert s[("hearthnet_source_up", (("source", "broker"),))] == 0
    assert not any(name.startswith(("hearthnet_event_log", "hearthnet_blob", "hearthnet_emergency"))
                   for name, _ in s)


def test_the_gateway_app_does_not_import_prometheus_client():
    code = ("import sys, hearthnet.gateway.app, hearthnet.gateway.metrics; "
            "sys.exit('prometheus_client' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_taken_metrics_port_leaves_the_node_running_without_it():
    import asyncio
    import socket
    from types import SimpleNamespace

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        obs = SimpleNamespace(metrics_port=port, metrics_host="127.0.0.1", metrics_enabled=True)
        gw = SimpleNamespace(cfg=SimpleNamespace(observability=obs))
        assert asyncio.run(metrics.start_scrape_port(gw)) is None
        off = SimpleNamespace(cfg=SimpleNamespace(observability=SimpleNamespace(
            metrics_port=0, metrics_host="127.0.0.1", metrics_enabled=True)))
        assert asyncio.run(metrics.start_scrape_port(off)) is None
