"""A whole node through its real processes: init, run (supervisord, broker, gateway,
workers), the local API and the CLI against it, and stopping without leftovers."""
from __future__ import annotations

import json
import signal
import socket

import psutil
import pytest

from hearthnet.services.embedding.available import minilm_unavailable
from hearthnet.supervise import knowledge_installed
from hearthnet.testing.waiting import wait_for

pytestmark = pytest.mark.integration


def test_full_init_then_run_then_status(make_node):
    node = make_node("alice")
    node.init()
    embedding = ("embedding",) if minilm_unavailable() is None else ()  # on by default when it can run
    rag = ("rag",) if knowledge_installed() else ()  # on by default with the knowledge extra
    node.start(wait_workers=("broker", "gateway", "ledger", "llm", "market", "chat", "alerts", "emergency")
               + embedding + rag)
    r = node.cli("status", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    status = doc.get("status", doc)
    assert status["node"]["display_name"] == "alice"
    assert status["node"]["node_id"].startswith("ed25519:")
    assert status["community"]["member_count"] == 1
    states = {w["program"]: w["state"] for w in status["workers"]}
    assert states == {"broker": "RUNNING", "gateway": "RUNNING", "ledger": "RUNNING",
                      "governance": "RUNNING", "file": "RUNNING", "discovery": "RUNNING", "llm": "RUNNING",
                      "market": "RUNNING", "chat": "RUNNING", "alerts": "RUNNING", "emergency": "RUNNING",
                      **{name: "RUNNING" for name in embedding + rag}}
    assert any("no backend configured" in n for n in status["notes"])
    em = wait_for(lambda: json.loads(node.cli("status", "--json").stdout).get("emergency"), timeout=30,
                  message="the emergency worker in status")
    assert em["mode"] == "online" and em["probes"] == []  # test nodes probe nothing outside
    human = node.cli("status")
    assert human.returncode == 0
    assert "llm_00" in human.stdout and "no backend configured" in human.stdout
    assert "Internet" in human.stdout and "online" in human.stdout


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_sigterm_leaves_no_processes(make_node, sig):
    node = make_node()
    node.init()
    node.start(wait_workers=("broker", "gateway", "llm"))
    pids = set(node.seen_pids)
    assert len(pids) >= 6  # hearthnet run, supervisord, broker, gateway, ledger, llm
    node.stop(sig)  # up to 15 s, then kill: exit code 0 means it stopped by itself
    assert node.proc.returncode == 0
    assert node.leftovers() == []
    assert not (node.run_dir / "api.token").exists()


def test_run_before_init_exits_1_with_the_command(make_node):
    node = make_node()
    r = node.cli("run", "--no-ui")
    assert r.returncode == 1
    assert "hearthnet init" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_run_with_port_taken_names_the_holder(make_node):
    node = make_node()
    node.init()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", node.port))
        s.listen()
        r = node.cli("run", "--no-ui")
    assert r.returncode == 1
    assert f"port {node.port}" in r.stderr
    assert f"PID {psutil.Process().pid}" in r.stderr


def test_local_api_needs_the_owner_token(make_node):
    node = make_node()
    node.init()
    node.start()
    status, body = node.request("/api/v1/status", auth=False)
    assert status == 401 and json.loads(body)["error"] == "unauthorized"
    status, body = node.request("/api/v1/status", headers={"Authorization": "Bearer nope"}, auth=False)
    assert status == 401
    status, body = node.request("/health", auth=False)
    assert status == 200
    status, body = node.request("/health", peer=True)
    assert status == 200
    status, body = node.request("/manifest", peer=True)
    manifest = json.loads(body)
    assert status == 200 and manifest["contract_version"] == "1.0"
    assert manifest["tls_fingerprint"].startswith("sha256:")
    assert manifest["endpoints"] == [{"transport": "https", "host": "127.0.0.1", "port": node.port}]
    from hearthnet.identity.manifest import verify_node_manifest

    verify_node_manifest(manifest)
    # the peer port serves no local API and no unsigned calls
    status, body = node.request("/api/v1/status", peer=True)
    assert status == 404
    status, body = node.request("/bus/v1/call", "POST", {"input": {}}, peer=True,
                                headers={"X-HearthNet-Capability": "experimental.echo"})
    assert status == 400 and json.loads(body)["error"] == "bad_request"


def test_bad_requests_get_contract_errors_and_gateway_keeps_serving(make_node):
    node = make_node()
    node.env["HEARTHNET_WORKERS_ECHO"] = "true"
    node.init()
    node.start(wait_workers=("broker", "gateway", "echo"))
    hdr = {"X-HearthNet-Capability": "experimental.echo"}
    status, body = node.request("/bus/v1/call", "POST", b"{not json", hdr)
    assert status == 400 and json.loads(body)["error"] == "bad_request"
    status, body = node.request("/bus/v1/call", "POST", b"x" * (16 * 1024 * 1024 + 10), hdr)
    assert status == 413 and json.loads(body)["error"] == "bad_request"
    status, body = node.call("experimental.ecko", {"input": {}})
    assert status == 404 and body["error"] == "not_found"
    assert "experimental.echo" in body["message"]
    status, body = node.call("experimental.echo", {"input": {"still": "here"}})
    assert status == 200 and body["output"] == {"still": "here"}
    traces = node.api("/api/v1/traces?n=5&capability=experimental.echo")["traces"]
    assert traces[-1]["result"] == "ok" and traces[-1]["route"].startswith("local:echo_")


def test_unknown_capability_via_cli_exits_1_naming_close_matches(make_node):
    node = make_node()
    node.env["HEARTHNET_WORKERS_ECHO"] = "true"
    node.init()
    node.start(wait_workers=("broker", "gateway", "echo"))
    r = node.cli("call", "experimental.ecoh", "--body", "{}")
    assert r.returncode == 1
    assert "not_found" in r.stderr or "no provider" in r.stderr
    assert "experimental.echo" in r.stderr
    bad = node.cli("call", "experimental.echo", "--body", '{"input": [1,}')
    assert bad.returncode == 2 and "column" in bad.stderr


def program(node, name: str) -> list:
    """The node's workers of one program (supervisord's view + the broker's)."""
    return [w for w in node.api("/api/v1/workers")["workers"] if w["program"] == name]


def test_worker_crashing_at_start_is_reported_fatal_with_its_log(make_node):
    node = make_node()
    node.init()
    node.start(wait_workers=("broker", "gateway", "llm"))
    pid = program(node, "llm")[0]["pid"]
    # Break the config under the running node: every restart of the worker now fails.
    good = node.config_file.read_text()
    node.add_config("[transport]\nport = 99999999\n")
    psutil.Process(pid).kill()
    llm = wait_for(lambda: (w := program(node, "llm")[0])["state"] == "FATAL" and w, 30, 0.3,
                   message="the llm worker FATAL")
    assert not llm["healthy"]
    assert any("transport" in line for line in llm["log_tail"]), llm["log_tail"]
    node.config_file.write_text(good)  # supervisord gave up on it: it stays FATAL
    r = node.cli("status")
    assert "FATAL" in r.stdout and "llm_00" in r.stdout


def test_http_caller_leaving_cancels_the_work(make_node):
    from hearthnet.unixhttp import UnixHTTPConnection

    node = make_node()
    node.env["HEARTHNET_WORKERS_ECHO"] = "true"
    node.init()
    node.start(wait_workers=("broker", "gateway", "echo"))
    body = {"input": {"items": list(range(1000)), "sleep_ms": 20}}
    conn = UnixHTTPConnection(str(node.api_socket), timeout=30)
    conn.request("POST", "/bus/v1/call", body=json.dumps(body),
                 headers={"Authorization": f"Bearer {node.token()}", "Accept": "text/event-stream",
                          "X-HearthNet-Capability": "experimental.echo",
                          "Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.readline().startswith(b"event: token")
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    wait_for(lambda: (ws := program(node, "echo")) and sum(w["in_flight"] for w in ws) == 0, 5, 0.05,
             message="echo's call cancelled (nothing in flight)")
    traces = node.api("/api/v1/traces?n=1&capability=experimental.echo")["traces"]
    assert traces[-1]["result"] == "cancelled"


def test_logs_route_filters_by_component_and_level(make_node):
    node = make_node()
    node.init()
    node.start(wait_workers=("broker", "gateway", "llm"))
    lines = node.api("/api/v1/logs?n=50&component=gateway")["lines"]
    assert lines and all("gateway" in (l.get("source", "") + l.get("component", "")) for l in lines)
    assert any("gateway listening" in l.get("msg", "") for l in lines)
    assert node.api("/api/v1/logs?n=50&level=error&component=gateway")["lines"] == []
    status, body = node.request("/api/v1/logs?level=loud")
    assert status == 400 and json.loads(body)["error"] == "bad_request"
    r = node.cli("log", "--component", "broker", "-n", "50", "--json")
    assert r.returncode == 0 and "broker ready" in r.stdout
