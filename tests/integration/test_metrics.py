"""Prometheus /metrics through real nodes (README "Metrics"): the owner's local API and the
opt-in TCP port, scraped with real HTTP clients and parsed with prometheus_client's parser;
the Grafana dashboard only uses names a real scrape has."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hearthnet.testing.nodes import Node, free_port, join_by_invite
from hearthnet.testing.waiting import wait_for

ECHO = "experimental.echo"
DASHBOARD = Path(__file__).resolve().parents[2] / "scripts" / "grafana-dashboard.json"
Samples = dict[tuple[str, tuple], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape_socket(node: Node) -> Samples:
    status, body = node.request("/metrics")
    assert status == 200, body
    return parse(body.decode())


def scrape_tcp(port: int) -> tuple[str, Samples]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.status == 200
        ctype = resp.headers["Content-Type"]
        return ctype, parse(resp.read().decode())


def value(s: Samples, name: str, **labels: str) -> float:
    return s.get((name, tuple(sorted(labels.items()))), 0.0)


def listening_ports(node: Node) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the node's gateway listens on."""
    pid = next(w["pid"] for w in node.api("/api/v1/status")["workers"] if w["name"] == "gateway")
    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN}


def test_metrics_count_calls_errors_restarts_peers_and_state(make_node):
    a, b = make_node("alice"), make_node("bob")
    mport = free_port()
    a.env.update(HEARTHNET_WORKERS_ECHO="true", HEARTHNET_OBSERVABILITY_METRICS_PORT=str(mport))
    a.init()
    a.start(wait_workers=("broker", "gateway", "echo", "ledger", "file", "emergency"))
    # status and a scrape read the broker's in-flight figures before they ask the workers
    # (else they count themselves: 1-4 calls in most reads before that was fixed)
    assert [a.api("/api/v1/status")["in_flight"] for _ in range(10)] == [0] * 10
    own = ("community.log.heads", "file.status", "emergency.status", "community.members.get")
    assert [sum(value(scrape_socket(a), "hearthnet_in_flight", capability=c, provider="local") for c in own)
            for _ in range(5)] == [0] * 5
    join_by_invite(a, b)
    b.start(wait_workers=("broker", "gateway", "ledger"))
    a.peer_add(b)
    b.peer_add(a)

    # no anonymous access on the local API; the peer port has no /metrics at all
    status, body = a.request("/metrics", auth=False)
    assert status == 401 and json.loads(body)["error"] == "unauthorized"
    status, _ = a.request("/metrics", peer=True)
    assert status == 404
    # the scrape port is opt-in: A (on) listens on loopback only, B (off) on its peer port only
    assert listening_ports(a) == {("127.0.0.1", a.port), ("127.0.0.1", mport)}
    assert listening_ports(b) == {("127.0.0.1", b.port)}

    before = scrape_socket(a)
    for i in range(5):
        assert a.call(ECHO, {"input": {"i": i}})[0] == 200
    status, body = a.call(ECHO, {"input": {"sleep_ms": -1}})
    assert status == 400 and body["error"] == "bad_request"
    ctype, after = scrape_tcp(mport)
    assert ctype.startswith("text/plain")
    ok = value(after, "hearthnet_requests_total", capability=ECHO, result="ok")
    assert ok - value(before, "hearthnet_requests_total", capability=ECHO, result="ok") == 5
    assert value(after, "hearthnet_requests_total", capability=ECHO, result="bad_request") \
        - value(before, "hearthnet_requests_total", capability=ECHO, result="bad_request") == 1
    counts = [value(s, "hearthnet_request_duration_seconds_count", capability=ECHO) for s in (before, after)]
    assert counts[1] - counts[0] == 6
    inf = value(after, "hearthnet_request_duration_seconds_bucket", capability=ECHO, le="+Inf")
    assert inf == counts[1]  # every call falls in some bucket; buckets are cumulative
    assert value(after, "hearthnet_emergency_mode", state="online") == 1  # no probe targets: online
    assert value(after, "hearthnet_event_log_size", community=_community(a)) >= 3
    assert value(after, "hearthnet_event_log_bytes", community=_community(a)) > 0
    assert ("hearthnet_blob_storage_bytes", ()) in after

    # a killed worker comes back and is counted
    echo = next(w for w in a.api("/api/v1/status")["workers"] if w["program"] == "echo")
    restarts = value(after, "hearthnet_worker_restarts_total", worker=echo["name"], program="echo")
    os.kill(echo["pid"], signal.SIGKILL)
    wait_for(lambda: value(scrape_socket(a), "hearthnet_worker_restarts_total", worker=echo["name"],
                           program="echo") == restarts + 1, 30, 0.2, message="echo restart counted")
    assert a.call(ECHO, {"input": {}})[0] == 200

    # the peer is a routed member, synced
    b_short = a.api("/api/v1/status")["peers"][0]["node_id_short"]

    def synced() -> Samples | None:
        x = scrape_socket(a)
        return x if ("hearthnet_peer_sync_age_seconds", (("peer", b_short),)) in x else None

    s = wait_for(synced, 60, 0.5, message="a successful sync with B in A's metrics")
    assert value(s, "hearthnet_peers", source="manual", state="member") == 1
    assert value(s, "hearthnet_nodes_online") == 2
    assert value(s, "hearthnet_peer_sync_ok", peer=b_short) == 1
    assert value(s, "hearthnet_sync_lag_seconds") >= 0

    # every metric the dashboard plots is in this real scrape
    names = {name for name, _ in s}
    for expr in _dashboard_exprs():
        for metric in set(re.findall(r"\bhearthnet_[a-z_]+", expr)):
            assert metric in names, f"{metric} (dashboard: {expr}) is not exported"


def test_metrics_port_off_by_default_and_metrics_can_be_disabled(make_node):
    node = make_node()
    node.env["HEARTHNET_OBSERVABILITY_METRICS_ENABLED"] = "false"
    node.init()
    node.start()
    assert listening_ports(node) == {("127.0.0.1", node.port)}
    status, body = node.request("/metrics")
    assert status == 404 and json.loads(body)["error"] == "not_found"


def test_a_full_log_disk_stops_no_worker(make_node):
    """<LOG> on a tiny tmpfs filled to the last byte: every log line is dropped, the node
    starts, serves, restarts a killed worker and answers a scrape; supervisord reports the
    first drop once rather than a traceback per line."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    node = make_node()
    node.env["HEARTHNET_WORKERS_ECHO"] = "true"
    node.init()
    node.log_dir.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k,mode=0700", "tmpfs",
                       str(node.log_dir)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        _fill(node.log_dir / "filler")
        node.start(wait_workers=("broker", "gateway", "echo", "ledger"))
        for i in range(20):
            assert node.call(ECHO, {"input": {"i": i}})[0] == 200
        echo = next(w for w in node.api("/api/v1/status")["workers"] if w["program"] == "echo")
        os.kill(echo["pid"], signal.SIGKILL)
        node.wait_healthy(("broker", "gateway", "echo", "ledger"))
        assert node.call(ECHO, {"input": {}})[0] == 200
        assert value(scrape_socket(node), "hearthnet_requests_total", capability=ECHO, result="ok") >= 21
        out = (node.run_dir / "supervisord.out").read_text(errors="replace")
        assert "No space left on device" in out and out.count("Traceback") <= 1, out[-2000:]
        assert node.proc is not None and node.proc.poll() is None
    finally:
        node.stop()
        subprocess.run(["umount", "-l", str(node.log_dir)])


def _fill(path: Path) -> None:
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def _community(node: Node) -> str:
    return node.api("/api/v1/status")["community"]["community_id"]


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dash["templating"]["list"] if v.get("definition")]
    assert len(exprs) > 10
    return exprs
