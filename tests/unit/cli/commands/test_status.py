from __future__ import annotations

import json

from tests.unit.cli.conftest import FULL_ID, invoke, worker, json_result


def test_status_against_stopped_node_exits_3(runner, env):
    result = invoke(runner, "status")
    assert result.exit_code == 3
    assert "Error:" in result.stderr and "no node is running" in result.stderr
    assert "hearthnet run" in result.stderr  # the hint says what to do
    assert "Traceback" not in result.output


def test_status_with_token_but_nothing_listening_exits_3(runner, env):
    from tests.unit.cli.conftest import free_port

    env.run.mkdir(parents=True)
    env.token_file.write_text("stale-token")
    (env.run / "api.json").write_text(json.dumps({"host": "127.0.0.1", "port": free_port()}))
    result = invoke(runner, "status", "--json")
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    assert doc == {"ok": False, "schema_version": 1, "error": {"code": "node_not_running", "message": doc["error"]["message"],
                                                                "hint": doc["error"]["hint"]}}
    assert "hearthnet run" in doc["error"]["hint"]
    assert "connection refused" in doc["error"]["message"]


def test_status_json_is_the_nodes_document(runner, gateway):
    result = invoke(runner, "status", "--json")
    assert result.exit_code == 0, result.output
    assert json_result(result.stdout) == gateway.status()
    req = gateway.requests[-1]
    assert req["path"] == "/api/v1/status"
    assert req["headers"]["Authorization"] == "Bearer " + gateway.token


def test_status_against_mock_node_returns_table(runner, gateway):
    gateway.workers = [
        worker("broker"),
        worker("llm_00", state="FATAL", restarts=3, log_tail=["Traceback (most recent call last):", "ImportError: boom"]),
        worker("gateway", healthy=False),
    ]
    gateway.notes = ["llm: no backend configured"]
    result = invoke(runner, "status")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("kitchen", "ed25519:AAAA-AAAA-AAAA-AAAA", "hearth", "Maple Street", "3 member(s)",
                 "broker", "llm_00", "FATAL", "RUNNING (no heartbeat)", "llm.chat@1.0", "1h02m"):
        assert text in out, text
    # the note comes with the config snippet that fixes it
    assert "llm: no backend configured" in out
    assert "[[llm.backends]]" in out and "config.toml" in out
    # a FATAL worker shows its last log lines
    assert "ImportError: boom" in out
    assert "hearthnet log --component llm_00" in out


def test_status_bad_response_exits_1(runner, gateway):
    gateway.status_override = "this is not json"
    result = invoke(runner, "status")
    assert result.exit_code == 1
    assert "not JSON" in result.stderr


def test_status_wrong_shape_exits_1(runner, gateway):
    gateway.status_override = json.dumps({"hello": "world"})
    result = invoke(runner, "status", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == "bad_response"


def test_status_wrong_token_exits_4(runner, gateway, env):
    env.token_file.write_text("someone-elses-token")
    result = invoke(runner, "status")
    assert result.exit_code == 4
    assert "bad or missing API token" in result.stderr
    assert str(env.token_file) in result.stderr  # hint names the token file


def test_status_json_does_not_import_rich(gateway):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from hearthnet.cli import main\n"
        "try:\n    main(['status', '--json'])\n"
        "except SystemExit as e:\n    rc = e.code\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('rich', 'aiohttp', 'zmq', 'msgpack', 'nacl', 'gradio', 'llama_cpp', 'psutil'))\n"
        "print('RC', rc, 'BAD', bad, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "RC 0 BAD []" in proc.stderr, proc.stderr
    assert json.loads(proc.stdout)["node"]["node_id"] == FULL_ID


def test_status_shows_the_blob_store(runner, gateway):
    doc = gateway.status()
    doc["blob_store"] = {"blobs": 13, "complete": 12, "pinned": 3, "store_bytes": 1_200_000_000,
                         "capacity_bytes": 250 * 10**9, "free_bytes": 80 * 10**9, "fraction": 0.68}
    gateway.status_override = json.dumps(doc)
    result = invoke(runner, "status")
    assert result.exit_code == 0, result.output
    assert "Blob store" in result.stdout and "12 file(s), 1.2 GB" in result.stdout
    assert "(3 pinned, 1 incomplete)" in result.stdout and "80.0 GB free of 250.0 GB (68 % used)" in result.stdout


def _human(doc: dict) -> str:
    import io

    from hearthnet.cli.commands.status import StatusResult
    from hearthnet.cli.render import Output

    buf = io.StringIO()
    StatusResult(doc).human(Output(out=buf, err=io.StringIO()))
    return buf.getvalue()


def test_status_shows_the_emergency_mode_and_its_effects():
    from tests.unit.cli.conftest import status_doc

    from hearthnet.emergency.effects import effects

    doc = status_doc([worker("broker")], [])
    doc["emergency"] = {"mode": "offline", "since": "2026-12-01T12:00:00.000Z", "flap_hold": False,
                        "peers_reachable": 2, "effects": effects("offline"), "applied": {"sync_interval_seconds": 30.0},
                        "probes": [{"target": "1.1.1.1", "kind": "dns", "ok": False, "ms": 2000, "error": "timeout",
                                    "deciding": True}]}
    out = _human(doc)
    for text in ("offline", "since 2026-12-01T12:00:00.000Z", "failing: 1.1.1.1", "peers reachable: 2",
                 "sync every 30 s", "LLM internet backends withdrawn", "16 MiB yield"):
        assert text in out, text
    doc["emergency"] = None
    assert "emergency worker is not running" in _human(doc)
