from __future__ import annotations

from tests.unit.cli.conftest import invoke, json_result


def _trace(i: int, capability: str = "llm.chat", result: str = "ok") -> dict:
    return {
        "trace_id": f"01J{i:023d}", "ts": f"2026-05-26T08:14:{i:02d}.281Z", "capability": capability,
        "version": "1.0", "caller": "ed25519:" + "A" * 42 + "Q", "route": "local", "worker": "llm_00",
        "result": result, "ms": 12.0 + i, "tokens_in": 5, "tokens_out": 7, "redispatched": i == 2,
    }


def test_trace_recent_table(runner, gateway):
    gateway.traces = [_trace(i) for i in range(5)] + [_trace(5, result="timeout")]
    result = invoke(runner, "trace", "recent", "3")
    assert result.exit_code == 0, result.output
    assert "timeout" in result.stdout and "llm.chat@1.0" in result.stdout and "5/7" in result.stdout
    assert "08:14:05.281" in result.stdout and "01J00000000000000000000005" in result.stdout  # whole id
    assert gateway.requests[-1]["query"] == {"n": "3"}


def test_trace_recent_json_and_capability_filter(runner, gateway):
    gateway.traces = [_trace(1), _trace(2, "embed.text"), _trace(3)]
    result = invoke(runner, "trace", "recent", "--capability", "embed.text", "--json")
    assert result.exit_code == 0, result.output
    doc = json_result(result.stdout)
    assert list(doc) == ["traces"]
    assert [t["capability"] for t in doc["traces"]] == ["embed.text"]
    assert gateway.requests[-1]["query"] == {"n": "20", "capability": "embed.text"}


def test_trace_recent_empty(runner, gateway):
    result = invoke(runner, "trace", "recent")
    assert result.exit_code == 0
    assert "no calls traced yet" in result.stdout


def test_trace_no_node(runner):
    assert invoke(runner, "trace", "recent").exit_code == 3
