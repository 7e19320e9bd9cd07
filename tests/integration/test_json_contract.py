"""Pins the `--json` documents scripts rely on, as the real CLI prints them against a real
node (its gateway, ledger, discovery, market, chat, alerts, embedding and rag workers), not
a hand-written copy of the gateway's output. Changing a key here is an interface change:
update the README and bump what needs bumping, then this test.

Every command of the click group runs with --json (the list is read from the group, so a
new command without a run here fails `test_every_command_runs_with_json`), and every
document must carry the envelope (README "JSON output"): `ok` and `schema_version` beside
the result's keys, or `error` {code, message, hint}. Streams (JSON Lines) are checked line
by line.

One node (alice) is started once for the whole module; a second device (bob) never runs:
it gets an id, an invite from alice, redeems it, and is erased at the end. Every command
runs once, in the module fixture; the tests only compare key sets.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import click
import pytest

from hearthnet.cli import main
from hearthnet.testing.knowledge import GUIDE
from hearthnet.testing.nodes import Node

pytestmark = pytest.mark.integration
CORE = ("broker", "gateway", "ledger", "discovery", "echo", "file", "emergency", "governance", "market", "chat",
        "alerts", "embedding", "rag")
CORPUS = "contract"
ENVELOPE = {"ok", "schema_version"}
# Commands without --json, and why.
NO_JSON = {
    "run": "runs the node in the foreground; its progress is for people (stderr)",
    "completion": "prints a shell script to source",
}
# Commands whose --json is a stream of JSON Lines (no envelope; an error ends the stream
# with the error envelope on one line).
STREAMS = {"log", "call --stream", "watch"}

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
DOCTOR_KEYS = {"checks"}  # its `ok` is the envelope's: exit 0, no check failed
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
ERROR_KEYS = {"ok", "schema_version", "error"}
ERROR_FIELDS = {"code", "message", "hint"}
ALERT_SEND_KEYS = {"event_id", "lamport", "identifier", "pushed"}
ALERT_ACK_KEYS = {"event_id", "lamport", "pushed"}
CHAT_SEND_KEYS = {"event_id", "lamport", "delivered", "to", "to_name"}
MARKET_POST_KEYS = {"event_id", "lamport", "client_id", "deduplicated"}
MARKET_DONE_KEYS = {"event_id", "lamport", "post_event_id", "reason", "already_expired"}
MARKET_SEARCH_KEYS = {"query", "posts", "search_mode", "search_reason", "model", "not_embedded"}
MEMBER_LS_KEYS = {"community_id", "community_name", "node_id", "members", "revoked", "pending_invites", "policy",
                  "approvals"}
MEMBER_CHANGE_KEYS = {"status", "action", "target_node_id", "event_id", "signers", "signatures", "needed",
                      "waiting_for", "refused"}
ASK_KEYS = {"answer", "sources", "corpus", "corpora", "corpus_choice", "model", "nothing_relevant", "message",
            "best_score"}
RAG_INGEST_KEYS = {"corpus", "files", "indexed", "already_indexed", "failed"}
RAG_LIST_KEYS = {"corpora", "remote"}
RAG_QUERY_KEYS = {"corpus", "query", "chunks", "embedding_model", "ms"}
RAG_VERIFY_KEYS = {"cid", "start", "end", "page", "verified", "found", "reason"}
BUNDLE_EXPORT_KEYS = {"out", "community_id", "exporter", "created_at", "since", "bytes", "events", "blobs",
                      "blobs_skipped", "ignored_summaries"}
BUNDLE_IMPORT_KEYS = {"bundle", "exporter", "exporter_level", "community_id", "created_at", "events", "blobs",
                      "blobs_added", "have", "have_error"}
SERVICE_INSTALL_KEYS = {"scope", "unit_path", "unit", "dry_run", "written", "reloaded", "enabled", "started",
                        "initialised", "user", "user_created", "cli_prefix", "commands", "next_steps"}
SERVICE_UNINSTALL_KEYS = {"scope", "unit_path", "removed", "commands", "data_kept"}
WATCH_KEYS = {"topic", "id", "event"}
RAG_REINDEX_KEYS = {"corpus", "embedding_model", "dim", "previous_model", "docs", "chunks", "from_stored_chunks", "ms",
                    "note"}
BUNDLE_VERIFY_KEYS = {"bundle", "valid", "community_id", "exporter", "exporter_level", "created_at", "since", "bytes",
                      "events", "blobs"}
BUNDLE_HAVE_KEYS = {"path", "node_id", "community_id", "created_at", "head", "event_count", "blobs"}
SERVICE_STATUS_KEYS = {"scope", "unit", "unit_path", "installed", "load_state", "active_state", "sub_state",
                       "unit_file_state", "main_pid", "n_restarts", "result", "since", "status_text", "cli_prefix"}
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
    def raw(self) -> Any:
        return json.loads(self.stdout)

    @property
    def doc(self) -> Any:
        """The result's own keys: the envelope checked and left out."""
        doc = dict(self.raw)
        assert doc.pop("ok") is (self.returncode == 0) and doc.pop("schema_version") == 1, self.stdout
        return doc

    @property
    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def _run(node: Node, *args: str) -> Run:
    r: subprocess.CompletedProcess = node.cli(*args, "--json", timeout=300)
    return Run(args, r.returncode, r.stdout, r.stderr)


def _watch(node: Node, *args: str) -> Run:
    """`watch --json` until its first line, then Ctrl-C (how one leaves it)."""
    argv = [node.python, "-m", "hearthnet", "watch", *args, "--json"]
    proc = subprocess.Popen(argv, env=node.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Run(("watch", *args), proc.returncode, first + rest, err)


def fake_systemctl(root: Path) -> str:
    """A `systemctl` that says Version=252 and does nothing: `service` commands run for
    real without touching this machine's service manager."""
    bin_dir = root / "fakebin"
    bin_dir.mkdir()
    script = bin_dir / "systemctl"
    script.write_text('#!/bin/sh\ncase "$*" in\n  *"show --property=Version"*) echo "Version=252";;\n'
                      '  *"show hearthnet.service"*) printf "LoadState=not-found\\nActiveState=inactive\\n";;\n'
                      'esac\nexit 0\n')
    script.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    root = tmp_path_factory.mktemp("contract")
    alice, bob = Node(root / "alice", "alice"), Node(root / "bob", "bob")
    alice.env["HEARTHNET_WORKERS_ECHO"] = "true"
    alice.env["PATH"] = fake_systemctl(root)
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
        _knowledge(alice, root, out)
        _community(alice, out)
        _models(alice, root, out)
        out["watch"] = _watch(alice, "community.event", "--since", "0")
        out["export"] = _run(alice, "export", "--out", str(root / "alice-export.zip"))
        out["export --verify"] = _run(alice, "export", "--verify", str(root / "alice-export.zip"))
        out["bundle export"] = _run(alice, "bundle", "export", "--out", str(root / "stick"))
        out["bundle verify"] = _run(alice, "bundle", "verify", str(root / "stick"))
        out["bundle have"] = _run(alice, "bundle", "have", str(root / "stick"))
        out["bundle import"] = _run(alice, "bundle", "import", str(root / "stick"))
        out["service install"] = _run(alice, "service", "install", "--user", "--dry-run")
        out["service status"] = _run(alice, "service", "status", "--user")
        out["service uninstall"] = _run(alice, "service", "uninstall", "--user")
        out["id"] = _run(bob, "id")
        out["status (no node)"] = _run(bob, "status")
        out["invite create"] = _run(alice, "invite", "create", "--node-id", out["id"].doc["node_id"],
                                    "--out", str(root / "invite.png"))
        out["invite redeem"] = _run(bob, "invite", "redeem", out["invite create"].doc["invite"], "--yes")
        out["peer add"] = _run(alice, "peer", "add", f"127.0.0.1:{bob.port}")
        _members(alice, out, out["id"].doc["node_id"])
        out["erase"] = _run(bob, "erase", "--yes")
        yield out
    finally:
        alice.cleanup()
        bob.cleanup()


def _knowledge(alice: Node, root: Path, out: dict[str, Run]) -> None:
    """rag ingest/list/query/verify/reindex and ask (a question the corpus has nothing on:
    answered without a model)."""
    guide = root / "guide.md"
    guide.write_text(GUIDE)
    out["rag ingest"] = _run(alice, "rag", "ingest", str(guide), "--corpus", CORPUS)
    out["rag list"] = _run(alice, "rag", "list")
    out["rag query"] = _run(alice, "rag", "query", "where is the shelter?", "--corpus", CORPUS, "-k", "1")
    top = out["rag query"].doc["chunks"][0]
    meta = top["metadata"]
    out["rag verify"] = _run(alice, "rag", "verify", meta["doc_cid"], "--start", str(meta["char_start"]),
                             "--end", str(meta["char_end"]), "--text", top["text"])
    out["rag reindex"] = _run(alice, "rag", "reindex", "--corpus", CORPUS)
    out["ask"] = _run(alice, "ask", "Who composed the Brandenburg concertos?", "--corpus", CORPUS)


def _community(alice: Node, out: dict[str, Run]) -> None:
    """market, alerts and the reading side of chat (sending needs bob, below)."""
    out["market post"] = _run(alice, "market", "post", "--category", "offer", "--title", "Spare sandbags",
                              "--tag", "flood")
    post = out["market post"].doc["event_id"]
    out["market ls"] = _run(alice, "market", "ls")
    out["market search"] = _run(alice, "market", "search", "sandbags")
    out["market done"] = _run(alice, "market", "done", post)
    out["alert send"] = _run(alice, "alert", "send", "--headline", "Drill: the river is rising", "--exercise")
    alert = out["alert send"].doc["event_id"]
    out["alert ls"] = _run(alice, "alert", "ls")
    out["alert show"] = _run(alice, "alert", "show", alert)
    out["alert ack"] = _run(alice, "alert", "ack", alert, "--status", "ok")
    out["chat ls"] = _run(alice, "chat", "ls")
    out["chat unread"] = _run(alice, "chat", "unread")


def _models(alice: Node, root: Path, out: dict[str, Run]) -> None:
    """model catalogue/add/ls/rm on the tiny GGUF, and a pull of a name the catalogue lacks
    (an error: its envelope)."""
    from hearthnet.testing.tiny_gguf import write_tiny_llama_gguf

    gguf = write_tiny_llama_gguf(root / "models" / "tiny.gguf")
    out["model catalogue"] = _run(alice, "model", "catalogue")
    out["model add"] = _run(alice, "model", "add", str(gguf), "--name", "tiny")
    out["model ls"] = _run(alice, "model", "ls")
    out["model rm"] = _run(alice, "model", "rm", "tiny")
    out["model pull"] = _run(alice, "model", "pull", "no-such-model")


def _members(alice: Node, out: dict[str, Run], bob_id: str) -> None:
    out["chat send"] = _run(alice, "chat", "send", bob_id, "sandbags at the fire station")
    out["member ls"] = _run(alice, "member", "ls")
    out["member promote"] = _run(alice, "member", "promote", bob_id, "--yes")
    out["member demote"] = _run(alice, "member", "demote", bob_id, "--yes")
    out["member revoke"] = _run(alice, "member", "revoke", bob_id, "--reason", "other", "--yes")


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
    assert set(run.raw) == ERROR_KEYS and run.raw["ok"] is False and run.raw["schema_version"] == 1
    assert set(run.raw["error"]) == ERROR_FIELDS and run.raw["error"]["code"] == "node_not_running"
    assert "hearthnet run" in run.raw["error"]["hint"]


def test_json_output_is_sorted_and_indented(runs: dict[str, Run]) -> None:
    for name in ("status", "version", "invite create"):
        out = runs[name].stdout
        assert out == json.dumps(json.loads(out), indent=2, sort_keys=True, ensure_ascii=False) + "\n", name


# ---- every command, one envelope ---------------------------------------------------------


def leaf_commands() -> dict[str, click.Command]:
    """Every runnable command of the `hearthnet` group, by its path ("file add")."""
    ctx = click.Context(main)
    found: dict[str, click.Command] = {}

    def walk(cmd: click.Command, path: tuple[str, ...]) -> None:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None, name
                walk(sub, (*path, name))
        else:
            found[" ".join(path)] = cmd

    walk(main, ())
    return found


def has_json(cmd: click.Command) -> bool:
    return any(isinstance(p, click.Option) and "--json" in p.opts for p in cmd.params)


def test_every_command_runs_with_json(runs: dict[str, Run]) -> None:
    commands = leaf_commands()
    for path, cmd in commands.items():
        if path in NO_JSON:
            assert not has_json(cmd), f"`{path}` has --json now: run it in the fixture and drop it from NO_JSON"
            continue
        assert has_json(cmd), f"`hearthnet {path}` has no --json (every command has one; README \"JSON output\")"
        assert path in {" ".join(r.args[:len(path.split())]) for r in runs.values()}, \
            f"`hearthnet {path} --json` is not run by this test: add it to the fixture with its keys"


def test_every_document_has_the_envelope(runs: dict[str, Run]) -> None:
    for name, run in runs.items():
        if name in STREAMS:
            lines = run.lines
            assert lines, f"{name}: no output\n{run.stderr}"
            assert all(not ENVELOPE & set(line) for line in lines[:-1]), f"{name}: {run.stdout}"
            continue
        doc = run.raw
        assert doc["schema_version"] == 1 and doc["ok"] is (run.returncode == 0), f"{name}: {run.stdout}"
        if "error" in doc:
            assert run.returncode != 0 and set(doc) == ERROR_KEYS and set(doc["error"]) == ERROR_FIELDS, name


def test_the_envelope_stays_flat(runs: dict[str, Run]) -> None:
    """A result's keys sit beside `ok`: what scripts read before the envelope is where it was."""
    doc = ok(runs, "version").raw
    assert set(doc) == VERSION_KEYS | ENVELOPE and doc["ok"] is True


def test_rag_and_ask(runs: dict[str, Run]) -> None:
    ingest = ok(runs, "rag ingest").doc
    assert set(ingest) == RAG_INGEST_KEYS and ingest["indexed"] == 1
    assert set(ok(runs, "rag list").doc) == RAG_LIST_KEYS
    assert set(ok(runs, "rag query").doc) == RAG_QUERY_KEYS
    verify = ok(runs, "rag verify").doc
    assert set(verify) == RAG_VERIFY_KEYS and verify["verified"] is True
    assert set(ok(runs, "rag reindex").doc) == RAG_REINDEX_KEYS
    ask = ok(runs, "ask").doc
    assert set(ask) == ASK_KEYS and ask["nothing_relevant"] is True


def test_market_alerts_chat(runs: dict[str, Run]) -> None:
    assert set(ok(runs, "market post").doc) == MARKET_POST_KEYS
    assert set(ok(runs, "market ls").doc) == {"posts", "max_lamport", "count"}
    assert set(ok(runs, "market search").doc) == MARKET_SEARCH_KEYS
    assert set(ok(runs, "market done").doc) == MARKET_DONE_KEYS
    assert set(ok(runs, "alert send").doc) == ALERT_SEND_KEYS
    assert set(ok(runs, "alert ls").doc) == {"alerts", "count"}
    assert set(ok(runs, "alert show").doc) == {"alert"}
    assert set(ok(runs, "alert ack").doc) == ALERT_ACK_KEYS
    assert set(ok(runs, "chat send").doc) == CHAT_SEND_KEYS
    assert set(ok(runs, "chat ls").doc) == {"messages", "marked_read"}
    assert set(ok(runs, "chat unread").doc) == {"unread", "total"}


def test_models(runs: dict[str, Run]) -> None:
    restart = {"node_running", "restarted", "serving", "loaded"}
    assert set(ok(runs, "model catalogue").doc) == {"models"}
    added = ok(runs, "model add").doc
    assert set(added) == {"name", "source", "entry", "config_path", "gguf", "load_check", "download"} | restart
    assert added["name"] == "tiny" and added["node_running"] is True
    assert set(ok(runs, "model ls").doc) == {"configured", "node_running", "serving", "detected"}
    assert set(ok(runs, "model rm").doc) == {"name", "entry", "config_path", "deleted_file"} | restart
    pull = runs["model pull"]
    assert pull.returncode == 1 and pull.raw["error"]["code"] == "not_found", pull.stdout


def test_members(runs: dict[str, Run]) -> None:
    assert set(ok(runs, "member ls").doc) == MEMBER_LS_KEYS
    for name in ("member promote", "member demote", "member revoke"):
        assert set(ok(runs, name).doc) == MEMBER_CHANGE_KEYS, name


def test_bundles(runs: dict[str, Run]) -> None:
    assert set(ok(runs, "bundle export").doc) == BUNDLE_EXPORT_KEYS
    assert set(ok(runs, "bundle verify").doc) == BUNDLE_VERIFY_KEYS
    assert set(ok(runs, "bundle have").doc) == BUNDLE_HAVE_KEYS
    assert set(ok(runs, "bundle import").doc) == BUNDLE_IMPORT_KEYS


def test_service(runs: dict[str, Run]) -> None:
    assert set(ok(runs, "service install").doc) == SERVICE_INSTALL_KEYS
    assert set(ok(runs, "service status").doc) == SERVICE_STATUS_KEYS
    assert set(ok(runs, "service uninstall").doc) == SERVICE_UNINSTALL_KEYS


def test_watch_lines(runs: dict[str, Run]) -> None:
    run = ok(runs, "watch")
    assert run.lines and all(set(line) == WATCH_KEYS for line in run.lines)

