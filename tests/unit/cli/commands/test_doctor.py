from __future__ import annotations

import json
import os
import socket

import pytest

from hearthnet import doctor
from tests.unit.cli.conftest import invoke, worker


def init_node(runner) -> None:
    result = invoke(runner, "init", "--non-interactive", "--name", "kitchen", "--community-name", "Maple Street")
    assert result.exit_code == 0, result.output


def lines_by_name(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("✔", "✘", "⚠", "-"):
            out[parts[1]] = line
    return out


def test_doctor_exit_code_reflects_failures(runner, env):
    # cold disk: no keys, no community -> 1, with fixes
    cold = invoke(runner, "doctor")
    assert cold.exit_code == 1, cold.output
    lines = lines_by_name(cold.stdout)
    assert lines["keys_present"].startswith("✘") and "→ fix: run `hearthnet init`" in cold.stdout
    assert lines["keys_loadable"].startswith("-") and "skipped" in lines["keys_loadable"]
    # initialised, node stopped -> 0; node checks skipped (skips do not fail)
    init_node(runner)
    warm = invoke(runner, "doctor")
    assert warm.exit_code == 0, warm.output
    lines = lines_by_name(warm.stdout)
    for name in ("config_valid", "keys_present", "keys_loadable", "community_present", "transport_port", "disk_space"):
        assert lines[name].startswith("✔"), lines[name]
    for name in ("workers_healthy", "at_least_one_capability", "recent_error_rate"):
        assert lines[name] == f"-  {name:<23}  skipped: node not running"
    # no LLM backend: a warning with the config snippet, not a failure
    assert lines["llm_backend_configured"].startswith("⚠") and "[[llm.backends]]" in warm.stdout
    # unknown check -> 2, listing the valid names
    bad = invoke(runner, "doctor", "--check", "nope")
    assert bad.exit_code == 2
    assert "unknown check 'nope'" in bad.stderr and "keys_present" in bad.stderr and "recent_error_rate" in bad.stderr


def test_doctor_key_permissions(runner, env):
    init_node(runner)
    key = env.data / "hearthnet" / "keys" / "device.ed25519"
    os.chmod(key, 0o644)
    result = invoke(runner, "doctor", "--check", "keys_present")
    assert result.exit_code == 1
    assert "mode 0644, must be 0600" in result.stdout and f"chmod 600 {key}" in result.stdout


def test_doctor_single_check_json(runner, env):
    result = invoke(runner, "doctor", "--check", "disk_space", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and [c["name"] for c in doc["checks"]] == ["disk_space"]
    assert set(doc["checks"][0]) == {"name", "ok", "detail", "fix", "warning", "crashed", "status"}


def test_doctor_crashed_check_exits_2(runner, env, monkeypatch):
    def boom(ctx):
        raise RuntimeError("kaput")

    monkeypatch.setitem(doctor.CHECKS, "disk_space", boom)
    result = invoke(runner, "doctor")
    assert result.exit_code == 2
    assert "check crashed: RuntimeError: kaput" in result.stdout
    assert "Traceback" not in result.output


def test_doctor_invalid_config(runner, env):
    env.config_file.parent.mkdir(parents=True)
    env.config_file.write_text('[node]\nprofile = "wizard"\n')
    result = invoke(runner, "doctor")
    assert result.exit_code == 1
    lines = lines_by_name(result.stdout)
    assert lines["config_valid"].startswith("✘") and "node.profile" in lines["config_valid"]
    assert f"→ fix: fix {env.config_file}" in result.stdout
    assert "skipped: config does not load" in lines["keys_present"]


def serve_blob_store(gateway, *, free: int = 50 * 10**9, bad: int = 0) -> None:
    from aiohttp import web

    answers = {"file.status": {"blobs": 3, "complete": 2, "pinned": 1, "store_bytes": 1_500_000_000,
                               "capacity_bytes": 200 * 10**9, "free_bytes": free, "fraction": 0.75},
               "file.verify": {"checked": 32, "bad": bad, "corrupt": ["blake3:" + "e" * 64] * bad}}

    async def on_call(request, body):
        return web.json_response({"output": answers[request.headers["X-HearthNet-Capability"]], "meta": {}})

    gateway.on_call = on_call


def test_doctor_with_running_node(runner, env, gateway):
    init_node(runner)
    serve_blob_store(gateway)
    gateway.traces = [{"result": "ok"}] * 9 + [{"result": "timeout"}]
    ok = invoke(runner, "doctor")
    lines = lines_by_name(ok.stdout)
    assert ok.exit_code == 0, ok.output
    assert "held by this node" in lines["transport_port"]
    assert "2 workers RUNNING" in lines["workers_healthy"]
    assert "1 local: llm.chat@1.0" in lines["at_least_one_capability"]
    assert "1/10" in lines["recent_error_rate"]
    gateway.workers = [worker("broker"), worker("llm_00", state="FATAL")]
    gateway.caps = []
    gateway.traces = [{"result": "ok"}] * 3 + [{"result": "internal_error"}]
    bad = invoke(runner, "doctor")
    assert bad.exit_code == 1
    lines = lines_by_name(bad.stdout)
    assert lines["workers_healthy"].startswith("✘") and "llm_00 FATAL" in lines["workers_healthy"]
    assert "hearthnet log --component llm_00" in bad.stdout
    assert lines["at_least_one_capability"].startswith("✘")
    assert lines["recent_error_rate"].startswith("✘") and "25%" in lines["recent_error_rate"]


def test_doctor_blob_store(runner, env, gateway):
    init_node(runner)
    serve_blob_store(gateway)
    ok = invoke(runner, "doctor", "--check", "blob_store")
    assert ok.exit_code == 0, ok.output
    assert "50.0 GB free" in ok.stdout and "2 file(s)" in ok.stdout and "32 sampled chunks verified" in ok.stdout
    serve_blob_store(gateway, bad=2)
    corrupt = invoke(runner, "doctor", "--check", "blob_store")
    assert corrupt.exit_code == 1 and "2 of 32 sampled chunks were corrupt" in corrupt.stdout
    serve_blob_store(gateway, free=10**8)
    full = invoke(runner, "doctor", "--check", "blob_store", "--json")
    assert full.exit_code == 1
    (check,) = json.loads(full.stdout)["checks"]
    assert check["ok"] is False and "below file.min_free_bytes" in check["detail"] and "file gc" in check["fix"]


def test_doctor_blob_store_without_a_node_checks_room_only(runner, env, monkeypatch):
    init_node(runner)
    result = invoke(runner, "doctor", "--check", "blob_store")
    assert result.exit_code == 0 and "not re-verified: node not running" in result.stdout
    monkeypatch.setenv("HEARTHNET_FILE_MIN_FREE_BYTES", str(10**18))
    assert invoke(runner, "doctor", "--check", "blob_store").exit_code == 1


def test_caller_mistakes_do_not_count_as_node_errors(runner, env, gateway):
    gateway.traces = [{"result": "ok"}] * 2 + [{"result": "not_found"}] * 5 + [{"result": "bad_request"}]
    result = invoke(runner, "doctor", "--check", "recent_error_rate")
    assert result.exit_code == 0, result.output
    assert "0/8 of the last calls failed (0%); 6 more refused" in result.stdout


def test_transport_port_held_by_other_process(runner, env, monkeypatch):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", 0))
        s.listen(1)
        monkeypatch.setenv("HEARTHNET_TRANSPORT_PORT", str(s.getsockname()[1]))
        result = invoke(runner, "doctor", "--check", "transport_port")
    assert result.exit_code == 1
    assert f"pid {os.getpid()}" in result.stdout
    assert "HEARTHNET_TRANSPORT_PORT" in result.stdout


def _with_backend(env, text: str) -> None:
    env.config_file.parent.mkdir(parents=True, exist_ok=True)
    env.config_file.write_text(text)


def test_llm_backend_reachable(runner, env, gateway, tmp_path):
    _with_backend(env, f'[[llm.backends]]\nname = "openai"\nurl = "http://127.0.0.1:{gateway.port}/health"\n')
    result = invoke(runner, "doctor", "--check", "llm_backend_reachable")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("✔") and f"127.0.0.1:{gateway.port}/health" in result.stdout


def test_llm_backend_unreachable(runner, env, tmp_path):
    from tests.unit.cli.conftest import free_port

    port = free_port()
    _with_backend(env, f'[[llm.backends]]\nname = "ollama"\nurl = "http://127.0.0.1:{port}"\n'
                       f'[[llm.backends]]\nname = "llama_cpp"\nmodel_path = "{tmp_path}/missing.gguf"\n')
    result = invoke(runner, "doctor", "--check", "llm_backend_reachable")
    assert result.exit_code == 1
    assert "Connection refused" in result.stdout and "model file not found" in result.stdout
    model = tmp_path / "missing.gguf"
    model.write_bytes(b"GGUF")
    assert invoke(runner, "doctor", "--check", "llm_backend_reachable").exit_code == 0  # one of two answers
    configured = invoke(runner, "doctor", "--check", "llm_backend_configured")
    assert configured.exit_code == 0 and "ollama" in configured.stdout and "llama_cpp" in configured.stdout


@pytest.mark.parametrize("name", doctor.check_names())
def test_every_check_runs_on_a_cold_disk(env, name):
    from hearthnet.config import load_config

    result = doctor.run_one(name, load_config())
    assert not result.crashed, result


def test_doctor_event_log(runner, env):
    import hashlib

    init_node(runner)
    ok = invoke(runner, "doctor", "--check", "event_log")
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith("✔") and "3 events, head lamport 3" in ok.stdout
    db = next((env.data / "hearthnet" / "communities").glob("*/events.sqlite"))
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])  # truncated
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    bad = invoke(runner, "doctor", "--check", "event_log")
    assert bad.exit_code == 1
    assert bad.stdout.startswith("✘") and str(db) in bad.stdout
    assert "kept untouched" in bad.stdout and "backup" in bad.stdout
    assert "delete" not in bad.stdout.replace("never repairs, replaces or deletes", "")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    full = invoke(runner, "doctor")
    assert full.exit_code == 1 and lines_by_name(full.stdout)["event_log"].startswith("✘")


def test_doctor_event_log_missing_is_a_warning(runner, env):
    init_node(runner)
    db = next((env.data / "hearthnet" / "communities").glob("*/events.sqlite"))
    db.unlink()
    result = invoke(runner, "doctor", "--check", "event_log")
    assert result.exit_code == 0 and result.stdout.startswith("⚠") and "the ledger creates it" in result.stdout


def test_doctor_mesh_usage_and_no_node(runner, env):
    both = invoke(runner, "doctor", "--mesh", "--check", "disk_space")
    assert both.exit_code == 2 and "--check and --mesh" in both.output
    init_node(runner)
    cold = invoke(runner, "doctor", "--mesh", "--json")  # needs a running node: exit 3
    assert cold.exit_code == 3, cold.output
    assert json.loads(cold.stdout)["error"]["code"] == "node_not_running"
