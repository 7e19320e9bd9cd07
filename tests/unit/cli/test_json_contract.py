"""Pins the `--json` documents scripts rely on. Changing a key here is an interface
change: update the README and bump what needs bumping, then this test."""
from __future__ import annotations

import json

from tests.unit.cli.conftest import invoke

STATUS_KEYS = {"node", "community", "workers", "capabilities", "in_flight", "notes"}
NODE_KEYS = {"node_id", "node_id_short", "display_name", "profile", "version", "contract_version", "uptime_seconds"}
COMMUNITY_KEYS = {"community_id", "name", "member_count"}
WORKER_KEYS = {"name", "program", "state", "healthy", "pid", "uptime_seconds", "restarts", "last_heartbeat_ms_ago",
               "in_flight", "served", "errors", "capabilities", "note", "log_tail"}
CAP_KEYS = {"name", "version", "stability", "node_id", "local", "params", "health", "p50_ms", "p99_ms",
            "success_rate", "in_flight", "max_concurrent", "providers"}
VERSION_KEYS = {"version", "contract_version", "python", "platform"}
ERROR_KEYS = {"ok", "error"}


def test_status_json_keys(runner, gateway):
    doc = json.loads(invoke(runner, "status", "--json").stdout)
    assert set(doc) == STATUS_KEYS
    assert set(doc["node"]) == NODE_KEYS
    assert set(doc["community"]) == COMMUNITY_KEYS
    assert all(set(w) == WORKER_KEYS for w in doc["workers"])
    assert all(set(c) == CAP_KEYS for c in doc["capabilities"])


def test_caps_json_keys(runner, gateway):
    doc = json.loads(invoke(runner, "caps", "--json").stdout)
    assert set(doc) == {"capabilities"}
    assert doc["capabilities"] and all(set(c) == CAP_KEYS for c in doc["capabilities"])


def test_version_json_keys(runner):
    assert set(json.loads(invoke(runner, "version", "--json").stdout)) == VERSION_KEYS


def test_error_envelope_keys(runner):
    doc = json.loads(invoke(runner, "status", "--json").stdout)
    assert set(doc) == ERROR_KEYS and doc["ok"] is False
    assert set(doc["error"]) == {"code", "message"}


def test_json_output_is_sorted_and_indented(runner):
    out = invoke(runner, "version", "--json").stdout
    doc = json.loads(out)
    assert out == json.dumps(doc, indent=2, sort_keys=True) + "\n"


def test_doctor_json_keys(runner):
    doc = json.loads(invoke(runner, "doctor", "--json").stdout)
    assert set(doc) == {"ok", "checks"}
    assert all(set(c) == {"name", "ok", "detail", "fix", "warning", "crashed", "status"} for c in doc["checks"])


def test_id_json_keys(runner):
    assert set(json.loads(invoke(runner, "id", "--json").stdout)) == {"node_id", "node_id_short", "id_text"}


def test_peer_add_json_keys(runner):
    assert set(json.loads(invoke(runner, "peer", "add", "10.0.0.5:7080", "--json").stdout)) == {
        "address", "node_running", "entry"}
