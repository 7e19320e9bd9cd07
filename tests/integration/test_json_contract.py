"""Pins the `--json` documents scripts rely on, as the real CLI prints them against a real
node (its gateway, ledger and discovery), not a hand-written copy of the gateway's output.
Changing a key here is an interface change: update the README and bump what needs
bumping, then this test.

One node (alice) is started once for the whole module; a second device (bob) never runs:
it gets an id, an invite from alice, redeems it, and is erased at the end. Every command
runs once, in the module fixture; the tests only compare key sets.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from hearthnet.testing.nodes import Node

pytestmark = pytest.mark.integration
CORE = ("broker", "gateway", "ledger", "discovery", "echo", "file", "emergency")

# ---- the pinned keys ------------------------------------------------------------------

STATUS_KEYS = {"node", "community", "workers", "capabilities", "in_flight", "notes", "peers", "discovery",
               "event_log", "blob_store", "emergency"}
BLOB_STORE_KEYS = {"blobs", "complete", "pinned", "store_bytes", "capacity_bytes", "free_bytes", "fraction",
                   "transfers"}
EMERGENCY_KEYS = {"mode", "since", "last_probe", "interval_seconds", "flap_hold", "probes", "peers_reachable",
                  "effects", "applied"}
EMERGENCY_EFFECT_KEYS = {"llm_internet_backends", "sync_interval_seconds", "big_file_transfers", "big_file_bytes"}
NODE_KEYS = {"node_id", "node_id_short", "display_name", "profile", "version", "contract_version", "uptime_seconds",
             "config_file"}
COMMUNITY_KEYS = {"community_id", "name", "member_count"}
WORKER_KEYS = {"name", "program", "state", "healthy", "pid", "uptime_seconds", "restarts", "last_heartbeat_ms_ago",
               "in_flight", "served", "errors", "capabilities", "note", "log_tail"}
# A local capability; remote entries are not produced by this one-node module.
CAP_KEYS = {"name", "version", "stability", "node_id", "local", "params", "health", "p50_ms", "p99_ms",
            "success_rate", "in_flight", "max_concurrent", "providers", "schema_hash", "workers"}
DISCOVERY_KEYS = {"diagnose", "mechanisms"}
MECHANISMS = {"cache", "mdns", "udp"}
MECHANISM_KEYS = {"code", "enabled", "error", "interfaces", "up"}
EVENT_LOG_KEYS = {"head", "count"}
TRACE_KEYS = {"trace_id", "ts", "capability", "version", "caller", "route", "worker", "result", "ms", "tokens_in",
              "tokens_out", "redispatched"}
LOG_KEYS = {"ts", "level", "source", "component", "msg"}  # every record has these; each adds its own fields
CALL_KEYS = {"output", "meta"}
FRAME_KEYS = {"event", "data"}
VERSION_KEYS = {"version", "contract_version", "python", "platform"}
DOCTOR_KEYS = {"ok", "checks"}
CHECK_KEYS = {"name", "ok", "detail", "fix", "warning", "crashed", "status"}
ID_KEYS = {"node_id", "node_id_short", "id_text"}
INIT_KEYS = {"changed", "node_id", "node_id_short", "display_name", "profile", "community_id", "community_id_short",
             "community_name", "config_path", "keys_dir", "message"}
EXPORT_KEYS = {"path", "bytes", "node_id", "community_id", "created_at", "format_version", "counts", "files"}
EXPORT_COUNTS = {"events", "chat", "chat_history", "market", "files", "blobs"}
EXPORT_FILE_KEYS = {"name", "size", "hash"}
VERIFY_KEYS = {"path", "valid", "node_id", "created_at", "format_version", "files", "problems"}
VERIFY_FILE_KEYS = {"name", "size", "hash", "ok"}
INVITE_KEYS = {"invite", "png", "invitee_node_id", "expires_at", "level", "community_id", "community_name",
               "event_id", "reissued"}
REDEEM_KEYS = {"changed", "node_id", "node_id_short", "community_id", "community_id_short", "community_name",
               "level", "inviter_node_id", "inviter_display_name", "bootstrap", "events_pulled", "events_rejected",
               "joined_event_id", "member_count", "config_path", "manifest_path", "message"}
PEER_ADD_KEYS = {"address", "node_running", "entry"}
PEER_ENTRY_KEYS = {"host", "port", "node_id", "tls_fingerprint", "how_found", "manual", "added_at", "last_verified"}
ERASE_KEYS = {"erased", "stopped", "steps", "config", "leftovers", "bytes_removed"}
ERASE_STOP_KEYS = {"running", "supervisord_pid", "signalled", "signalled_pid", "seconds", "killed"}
ERASE_STEP_KEYS = {"step", "path", "status", "bytes", "error"}
ERASE_CONFIG_KEYS = {"path", "status", "error"}
ERROR_KEYS = {"ok", "error"}
FILE_ADD_KEYS = {"path", "cid", "filename", "size_bytes", "pinned", "added"}
FILE_GET_KEYS = {"cid", "filename", "size_bytes", "out", "from", "fetched", "resumed_chunks", "dropped", "failures", "ms"}
FILE_LS_KEYS = {"cid", "filename", "size_bytes", "pinned", "complete", "chunks_missing", "holders", "last_used"}
FILE_USAGE_KEYS = {"capacity_bytes", "used_bytes", "free_bytes", "store_bytes", "fraction", "min_free_bytes"}
FILE_PIN_KEYS = {"cid", "pinned"}
FILE_GC_KEYS = {"freed_bytes", "evicted"}


@dataclass
class Run:
    """One CLI command: its arguments, exit code and --json document(s)."""
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def doc(self) -> Any:
        return json.loads(self.stdout)

    @property
    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def _run(node: Node, *args: str) -> Run:
    r: subprocess.CompletedProcess = node.cli(*args, "--json", timeout=120)
    return Run(args, r.returncode, r.stdout, r.stderr)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    root = tmp_path_factory.mktemp("contract")
    alice, bob = Node(root / "alice", "alice"), Node(root / "bob", "bob")
    alice.env["HEARTHNET_WORKERS_ECHO"] = "true"
    out: dict[str, Run] = {}
    try:
        out["init"] = _run(alice, "init", "--non-interactive", "--name", "alice")
        alice.start(wait_workers=CORE)
        out["version"] = _run(alice, "version")
        out["doctor"] = _run(alice, "doctor")
        out["call"] = _run(alice, "call", "experimental.echo", "--body", '{"input": {"text": "hi"}}')
        out["call --stream"] = _run(alice, "call", "experimental.echo", "--stream", "--body",
                                    '{"input": {"items": [1, 2]}}')
        out["status"] = _run(alice, "status")
        out["caps"] = _run(alice, "caps")
        out["trace recent"] = _run(alice, "trace", "recent")
        out["log"] = _run(alice, "log", "-n", "20")
        (root / "notes.txt").write_text("shelter at the school\n")
        out["file add"] = _run(alice, "file", "add", str(root / "notes.txt"))
        cid = out["file add"].doc["files"][0]["cid"]
        out["file ls"] = _run(alice, "file", "ls")
        out["file get"] = _run(alice, "file", "get", cid, "--out", str(root / "notes-copy.txt"))
        out["file pin"] = _run(alice, "file", "pin", cid)
        out["file unpin"] = _run(alice, "file", "unpin", cid)
        out["file gc"] = _run(alice, "file", "gc")
        out["export"] = _run(alice, "export", "--out", str(root / "alice-export.zip"))
        out["export --verify"] = _run(alice, "export", "--verify", str(root / "alice-export.zip"))
        out["id"] = _run(bob, "id")
        out["status (no node)"] = _run(bob, "status")
        out["invite create"] = _run(alice, "invite", "create", "--node-id", out["id"].doc["node_id"],
                                    "--out", str(root / "invite.png"))
        out["invite redeem"] = _run(bob, "invite", "redeem", out["invite create"].doc["invite"], "--yes")
        out["peer add"] = _run(alice, "peer", "add", f"127.0.0.1:{bob.port}")
        out["erase"] = _run(bob, "erase", "--yes")
        yield out
    finally:
        alice.cleanup()
        bob.cleanup()


def ok(runs: dict[str, Run], name: str) -> Run:
    run = runs[name]
    assert run.returncode == 0, f"hearthnet {' '.join(run.args)} --json: exit {run.returncode}\n{run.stderr}"
    return run


def test_status(runs: dict[str, Run]) -> None:
    doc = ok(runs, "status").doc
    assert set(doc) == STATUS_KEYS
    assert set(doc["node"]) == NODE_KEYS
    assert set(doc["community"]) == COMMUNITY_KEYS
    assert doc["workers"] and all(set(w) == WORKER_KEYS for w in doc["workers"])
    assert doc["capabilities"] and all(set(c) == CAP_KEYS for c in doc["capabilities"])
    assert set(doc["discovery"]) == DISCOVERY_KEYS
    assert set(doc["discovery"]["mechanisms"]) == MECHANISMS
    assert all(set(m) == MECHANISM_KEYS for m in doc["discovery"]["mechanisms"].values())
    assert set(doc["event_log"]) == EVENT_LOG_KEYS
    assert set(doc["blob_store"]) == BLOB_STORE_KEYS
    assert set(doc["emergency"]) == EMERGENCY_KEYS
    assert set(doc["emergency"]["effects"]) == EMERGENCY_EFFECT_KEYS


def test_file_commands(runs: dict[str, Run]) -> None:
    added = ok(runs, "file add").doc
    assert set(added) == {"files"} and all(set(f) == FILE_ADD_KEYS for f in added["files"])
    listing = ok(runs, "file ls").doc
    assert set(listing) == {"files", "usage"} and set(listing["usage"]) == FILE_USAGE_KEYS
    assert listing["files"] and all(set(f) == FILE_LS_KEYS for f in listing["files"])
    assert set(ok(runs, "file get").doc) == FILE_GET_KEYS
    assert set(ok(runs, "file pin").doc) == set(ok(runs, "file unpin").doc) == FILE_PIN_KEYS
    assert set(ok(runs, "file gc").doc) == FILE_GC_KEYS


def test_caps(runs: dict[str, Run]) -> None:
    doc = ok(runs, "caps").doc
    assert set(doc) == {"capabilities"}
    assert doc["capabilities"] and all(set(c) == CAP_KEYS for c in doc["capabilities"])


def test_trace_recent(runs: dict[str, Run]) -> None:
    doc = ok(runs, "trace recent").doc
    assert set(doc) == {"traces"}
    assert doc["traces"] and all(set(t) == TRACE_KEYS for t in doc["traces"])


def test_log_records(runs: dict[str, Run]) -> None:
    records = ok(runs, "log").lines
    assert records and all(LOG_KEYS <= set(r) for r in records)


def test_call_and_stream_frames(runs: dict[str, Run]) -> None:
    assert set(ok(runs, "call").doc) == CALL_KEYS
    frames = ok(runs, "call --stream").lines
    assert frames and all(set(f) == FRAME_KEYS for f in frames)
    assert frames[-1]["event"] == "done"


def test_version(runs: dict[str, Run]) -> None:
    assert set(ok(runs, "version").doc) == VERSION_KEYS


def test_doctor(runs: dict[str, Run]) -> None:
    run = runs["doctor"]
    assert run.returncode in (0, 1), run.stderr  # 1: a check failed (none should; see below)
    assert set(run.doc) == DOCTOR_KEYS
    assert run.doc["checks"] and all(set(c) == CHECK_KEYS for c in run.doc["checks"])


def test_doctor_sees_the_running_node(runs: dict[str, Run]) -> None:
    checks = {c["name"]: c for c in runs["doctor"].doc["checks"]}
    assert checks["transport_port"]["ok"], checks["transport_port"]
    assert checks["workers_healthy"]["status"] != "skipped", checks["workers_healthy"]


def test_id(runs: dict[str, Run]) -> None:
    assert set(ok(runs, "id").doc) == ID_KEYS


def test_init(runs: dict[str, Run]) -> None:
    assert set(ok(runs, "init").doc) == INIT_KEYS


def test_export_and_verify(runs: dict[str, Run]) -> None:
    doc = ok(runs, "export").doc
    assert set(doc) == EXPORT_KEYS and set(doc["counts"]) == EXPORT_COUNTS
    assert doc["files"] and all(set(f) == EXPORT_FILE_KEYS for f in doc["files"])
    verify = ok(runs, "export --verify").doc
    assert set(verify) == VERIFY_KEYS and verify["valid"] is True
    assert verify["files"] and all(set(f) == VERIFY_FILE_KEYS for f in verify["files"])


def test_invite_create_and_redeem(runs: dict[str, Run]) -> None:
    assert set(ok(runs, "invite create").doc) == INVITE_KEYS
    assert set(ok(runs, "invite redeem").doc) == REDEEM_KEYS


def test_peer_add(runs: dict[str, Run]) -> None:
    doc = ok(runs, "peer add").doc
    assert set(doc) == PEER_ADD_KEYS and doc["node_running"] is True
    assert set(doc["entry"]) == PEER_ENTRY_KEYS


def test_erase(runs: dict[str, Run]) -> None:
    doc = ok(runs, "erase").doc
    assert set(doc) == ERASE_KEYS
    assert set(doc["stopped"]) == ERASE_STOP_KEYS and set(doc["config"]) == ERASE_CONFIG_KEYS
    assert doc["steps"] and all(set(s) == ERASE_STEP_KEYS for s in doc["steps"])


def test_error_envelope(runs: dict[str, Run]) -> None:
    run = runs["status (no node)"]
    assert run.returncode == 3
    assert set(run.doc) == ERROR_KEYS and run.doc["ok"] is False
    assert set(run.doc["error"]) == {"code", "message"}


def test_json_output_is_sorted_and_indented(runs: dict[str, Run]) -> None:
    for name in ("status", "version", "invite create"):
        out = runs[name].stdout
        assert out == json.dumps(json.loads(out), indent=2, sort_keys=True, ensure_ascii=False) + "\n", name
