from __future__ import annotations

import json
import threading

import pytest
from aiohttp import web

from hearthnet.cli.commands.call import parse_body, parse_target
from hearthnet.errors import HearthNetError
from tests.unit.cli.conftest import invoke, sse

BODY = '{"params": {"model": "m"}, "input": {"messages": [{"role": "user", "content": "Hi"}]}}'


def test_call_streams_stdout_then_zero(runner, gateway):
    async def on_call(request, body):
        return await sse(request, [
            ("token", {"text": "Hel", "logprob": -0.1}),
            ("token", {"text": "lo", "logprob": -0.2}),
            ("progress", {"current": 1, "total": 2, "stage": "gen"}),
            ("token", {"text": " world", "logprob": -0.3}),
            ("done", {"tokens_out": 3, "model": "m"}),
        ])

    gateway.on_call = on_call
    result = invoke(runner, "call", "llm.chat@1.0", "--stream", "--body", BODY)
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hello world\n"
    frames = [json.loads(line) for line in result.stderr.splitlines()]
    assert frames == [
        {"event": "progress", "data": {"current": 1, "total": 2, "stage": "gen"}},
        {"event": "done", "data": {"tokens_out": 3, "model": "m"}},
    ]
    req = gateway.requests[-1]
    assert req["headers"]["X-HearthNet-Capability"] == "llm.chat"
    assert req["headers"]["X-HearthNet-Capability-Version"] == "1.0"
    assert req["headers"]["Accept"] == "text/event-stream"
    assert req["body"] == json.loads(BODY)


def test_call_stream_json_lines(runner, gateway):
    async def on_call(request, body):
        return await sse(request, [("token", {"text": "a"}), ("done", {})])

    gateway.on_call = on_call
    result = invoke(runner, "call", "llm.chat", "--stream", "--json", "--body", "{}")
    assert result.exit_code == 0
    assert [json.loads(x) for x in result.stdout.splitlines()] == [
        {"event": "token", "data": {"text": "a"}}, {"event": "done", "data": {}}]


def test_call_stream_tokens_are_parsed_as_they_arrive(gateway):
    """The server holds back everything after the first token until the client has
    seen it: a client that waited for the whole body would time out here."""
    from hearthnet.config import load_config
    from hearthnet.localapi import LocalApi

    seen_first = threading.Event()

    async def on_call(request, body):
        return await sse(request, [("token", {"text": "first"}), ("token", {"text": "second"}), ("done", {})],
                         gate=seen_first, gate_after=1)

    gateway.on_call = on_call
    frames = LocalApi.from_config(load_config()).call("llm.chat", "1.0", {}, stream=True)
    first = next(frames)
    assert first == ("token", {"text": "first"})
    seen_first.set()
    assert list(frames) == [("token", {"text": "second"}), ("done", {})]


def test_call_non_stream_prints_response_json(runner, gateway):
    async def on_call(request, body):
        assert request.headers["Accept"] == "application/json"
        return web.json_response({"output": {"text": "hi"}, "meta": {"ms": 3}})

    gateway.on_call = on_call
    result = invoke(runner, "call", "experimental.echo", "--body", "{}")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"output": {"text": "hi"}, "meta": {"ms": 3}}


@pytest.mark.parametrize(
    "status,code,exit_code",
    [(429, "capacity_exceeded", 5), (429, "rate_limited", 5), (401, "unauthorized", 4),
     (403, "revoked", 4), (404, "not_found", 1), (400, "bad_request", 2), (408, "timeout", 1),
     (500, "internal_error", 1)],
)
def test_call_returns_nonzero_on_wire_error(runner, gateway, status, code, exit_code):
    message = {"not_found": "no capability llm.chta; did you mean llm.chat@1.0?"}.get(code, f"{code} happened")

    async def on_call(request, body):
        return web.json_response({"error": code, "message": message, "retry_after_ms": 250}, status=status)

    gateway.on_call = on_call
    result = invoke(runner, "call", "llm.chta", "--body", "{}")
    assert result.exit_code == exit_code
    assert result.stdout == ""
    assert f"Error: {message}" in result.stderr  # passed through, close matches included
    assert "Traceback" not in result.output


def test_call_wire_error_json_envelope(runner, gateway):
    async def on_call(request, body):
        return web.json_response({"error": "capacity_exceeded", "message": "busy", "retry_after_ms": 500}, status=429)

    gateway.on_call = on_call
    result = invoke(runner, "call", "llm.chat", "--json", "--body", "{}")
    assert result.exit_code == 5
    assert json.loads(result.stdout) == {"ok": False, "schema_version": 1, "error": {
        "code": "capacity_exceeded", "message": "busy", "hint": "the node is busy; retry after 500 ms"}}


def test_call_error_frame_mid_stream(runner, gateway):
    async def on_call(request, body):
        return await sse(request, [("token", {"text": "partial"}),
                                   ("error", {"error": "timeout", "message": "generation timed out"})])

    gateway.on_call = on_call
    result = invoke(runner, "call", "llm.chat", "--stream", "--body", "{}")
    assert result.exit_code == 1
    assert result.stdout == "partial\n"  # the partial answer, then a clean line end
    assert "Error: generation timed out" in result.stderr


def test_call_stream_cut_off_without_done_exits_1(runner, gateway):
    async def on_call(request, body):
        return await sse(request, [("token", {"text": "x"})])

    gateway.on_call = on_call
    result = invoke(runner, "call", "llm.chat", "--stream", "--body", "{}")
    assert result.exit_code == 1
    assert "before it sent `done`" in result.stderr


def test_call_stream_to_non_streaming_capability(runner, gateway):
    async def on_call(request, body):
        return web.json_response({"output": {"vector": [1, 2]}, "meta": {}})

    gateway.on_call = on_call
    result = invoke(runner, "call", "embed.text", "--stream", "--body", "{}")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"output": {"vector": [1, 2]}, "meta": {}}


def test_call_malformed_body_exits_2_with_position(runner):
    result = invoke(runner, "call", "llm.chat", "--body", '{"params": {},\n "input": [1, 2,, 3]}')
    assert result.exit_code == 2
    assert "line 2 column 17" in result.stderr
    assert "not valid JSON" in result.stderr


def test_call_malformed_body_json_envelope(runner):
    result = invoke(runner, "call", "llm.chat", "--json", "--body", "{nope")
    assert result.exit_code == 2
    err = json.loads(result.stdout)["error"]
    assert err["code"] == "usage" and "line 1 column 2" in err["message"]


def test_call_body_from_file_and_stdin(runner, gateway, tmp_path):
    async def on_call(request, body):
        return web.json_response({"output": body, "meta": {}})

    gateway.on_call = on_call
    f = tmp_path / "body.json"
    f.write_text('{"input": {"x": 1}}')
    r1 = invoke(runner, "call", "experimental.echo", "--body", f"@{f}")
    assert r1.exit_code == 0 and json.loads(r1.stdout)["output"] == {"input": {"x": 1}}
    r2 = invoke(runner, "call", "experimental.echo", "--body", "-", input='{"input": {"y": 2}}')
    assert r2.exit_code == 0 and json.loads(r2.stdout)["output"] == {"input": {"y": 2}}
    bad = tmp_path / "bad.json"
    bad.write_text("[1,\n2")
    r3 = invoke(runner, "call", "experimental.echo", "--body", f"@{bad}")
    assert r3.exit_code == 2 and str(bad) in r3.stderr and "line 2" in r3.stderr
    r4 = invoke(runner, "call", "experimental.echo", "--body", f"@{tmp_path / 'missing.json'}")
    assert r4.exit_code == 2 and "cannot read" in r4.stderr


def test_call_no_node_exits_3(runner):
    assert invoke(runner, "call", "llm.chat", "--body", "{}").exit_code == 3


def test_parse_target_and_body():
    assert parse_target("llm.chat") == ("llm.chat", "1.0")
    assert parse_target("llm.chat@2.1") == ("llm.chat", "2.1")
    for bad in ("@1.0", "llm.chat@1", "llm.chat@x.y"):
        with pytest.raises(HearthNetError) as e:
            parse_target(bad)
        assert e.value.exit_code == 2
    assert parse_body('{"a": 1}') == {"a": 1}
    with pytest.raises(HearthNetError, match="must be a JSON object"):
        parse_body("[1]")
