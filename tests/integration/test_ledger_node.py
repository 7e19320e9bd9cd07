"""The ledger worker in a real node: CLI append/read, durability across kill -9 of the
worker and of the whole process tree, a subscriber over the gateway's SSE, and a damaged
event log (FATAL worker, doctor names the file, the file is left as it was)."""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
from pathlib import Path
from typing import Any

import psutil
import pytest

from hearthnet.testing.nodes import Node
from hearthnet.testing.waiting import wait_for

pytestmark = pytest.mark.integration
CORE = ("broker", "gateway", "ledger")


def post(n: int) -> dict[str, Any]:
    return {"input": {"event_type": "market.post.created", "data": {
        "client_id": f"c{n}", "category": "offer", "title": f"Ladder {n}", "body": "free to borrow",
        "location": None, "tags": ["tools"], "ttl_seconds": 3600}}}


def append(node: Node, n: int) -> dict[str, Any]:
    status, body = node.call("community.log.append", post(n))
    assert status == 200, body
    return body["output"]["event"]


def stored_ids(node: Node) -> list[str]:
    status, body = node.call("community.log.events", {"input": {"since_lamport": 0}})
    assert status == 200, body
    return [e["event_id"] for e in body["output"]["events"]]


def events_db(node: Node) -> Path:
    return next((node.root / "data" / "hearthnet" / "communities").glob("*/events.sqlite"))


def ledger(node: Node) -> dict[str, Any]:
    return next(w for w in node.api("/api/v1/workers")["workers"] if w["program"] == "ledger")


def test_ledger_is_healthy_and_cli_append_shows_in_events(make_node):
    node = make_node("alice")
    node.init()
    node.start(wait_workers=CORE)
    worker = ledger(node)
    assert worker["state"] == "RUNNING" and worker["healthy"]
    caps = {c["name"] for c in node.api("/api/v1/capabilities")["capabilities"]}
    assert {"community.log.append", "community.log.events", "community.log.subscribe",
            "community.manifest.get"} <= caps
    r = node.cli("call", "community.log.append", "--body", json.dumps(post(1)))
    assert r.returncode == 0, r.stderr
    event = json.loads(r.stdout)["output"]["event"]
    assert event["lamport"] == 4 and event["event_type"] == "market.post.created"
    r = node.cli("call", "community.log.events", "--body", json.dumps({"input": {"since_lamport": 3}}))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["output"]["events"] == [event]
    bad = node.cli("call", "community.log.append", "--body",
                   json.dumps({"input": {"event_type": "community.created", "data": {}}}))
    assert bad.returncode != 0 and "bad_request" in bad.stderr


def _kill_tree(node: Node) -> None:
    """SIGKILL every process of the node at once: no process gets to clean up."""
    root = psutil.Process(node.proc.pid)
    procs = [root] + root.children(recursive=True)
    assert len(procs) >= 5
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    gone, alive = psutil.wait_procs(procs, timeout=10)
    assert alive == []
    node.proc.wait()


def test_acknowledged_appends_survive_kill_9_of_worker_and_of_the_whole_tree(make_node):
    node = make_node()
    node.init()
    node.start(wait_workers=CORE)
    first = append(node, 1)
    pid = ledger(node)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: (w := ledger(node))["healthy"] and w["pid"] != pid, 40, message="a new healthy ledger")
    assert first["event_id"] in stored_ids(node)
    second = append(node, 2)
    assert second["lamport"] == first["lamport"] + 1  # the clock survived too
    _kill_tree(node)
    node.start(wait_workers=CORE)
    ids = stored_ids(node)
    assert first["event_id"] in ids and second["event_id"] in ids and len(ids) == 5
    assert append(node, 3)["lamport"] == second["lamport"] + 1


def _local_connection(node: Node) -> http.client.HTTPConnection:
    """The node's local API: its unix socket when the gateway has one, else the TCP port."""
    sock = getattr(node, "api_socket", None)
    if sock is not None and sock.exists():
        from hearthnet.unixhttp import UnixHTTPConnection

        return UnixHTTPConnection(str(sock), timeout=30)
    return http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)


def _sse_frame(resp: http.client.HTTPResponse) -> tuple[str, dict[str, Any]]:
    event, data = "", ""
    while True:
        line = resp.readline().decode("utf-8").rstrip("\n")
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: "):
            data = line[len("data: "):]
        elif line == "" and event:
            return event, json.loads(data)


def test_subscriber_receives_an_event_appended_after_it_subscribed(make_node):
    node = make_node()
    node.init()
    node.start(wait_workers=CORE)
    before = append(node, 0)
    conn = _local_connection(node)
    conn.request("POST", "/bus/v1/call", body=json.dumps({"params": {}, "input": {}}),
                 headers={"Authorization": f"Bearer {node.token()}", "Accept": "text/event-stream",
                          "X-HearthNet-Capability": "community.log.subscribe",
                          "Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    event, data = _sse_frame(resp)
    assert event == "subscribed" and data["head"] == before["lamport"]
    appended = [append(node, n) for n in (1, 2)]
    received = [_sse_frame(resp) for _ in appended]
    assert received == [("event", ev) for ev in appended]
    conn.close()  # the caller leaves: the subscription ends
    wait_for(lambda: ledger(node)["in_flight"] == 0, 10, 0.05, message="the subscription ended")


def test_damaged_event_log_makes_the_ledger_fatal_and_stays_untouched(make_node):
    node = make_node()
    node.init()
    db = events_db(node)
    with db.open("r+b") as fh:  # garbage over the SQLite header
        fh.write(os.urandom(64))
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    node.start(wait_workers=("broker", "gateway"))
    worker = wait_for(lambda: (w := ledger(node))["state"] == "FATAL" and w, 120, message="the ledger FATAL")
    assert not worker["healthy"]
    assert any(str(db) in line for line in worker["log_tail"]), worker["log_tail"]
    log_lines = (node.log_dir / "ledger.log").read_text().splitlines()
    assert log_lines and "Traceback" not in "\n".join(log_lines)
    for line in log_lines:  # one plain line per attempt, naming the file
        record = json.loads(line)
        assert record["level"] == "error" and str(db) in record["msg"] and record["code"] == "db_corrupt"
    doctor = node.cli("doctor", "--check", "event_log")
    assert doctor.returncode == 1 and str(db) in doctor.stdout and "kept untouched" in doctor.stdout
    status = node.cli("status")
    assert "ledger" in status.stdout and "FATAL" in status.stdout
    node.stop()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
