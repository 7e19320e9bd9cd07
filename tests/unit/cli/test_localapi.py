from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web

from hearthnet.errors import HearthNetError, NodeNotRunning
from hearthnet.localapi import LocalApi
from tests.unit.cli.conftest import TOKEN, free_port


def api_for(env, port: int, host: str = "127.0.0.1") -> LocalApi:
    return LocalApi(host, port, env.token_file)


@pytest.mark.parametrize("host,expected", [("0.0.0.0", "127.0.0.1"), ("", "127.0.0.1"), ("::", "127.0.0.1"),
                                            ("192.168.1.5", "192.168.1.5"), ("::1", "::1")])
def test_host_choice(host, expected):
    assert LocalApi(host, 7080, Path("/t")).host == expected


def test_base_url_brackets_ipv6():
    assert LocalApi("::1", 7080, Path("/t")).base_url == "http://[::1]:7080"


def test_from_config_uses_transport_and_token_file(env):
    from hearthnet.config import load_config

    cfg = load_config()
    api = LocalApi.from_config(cfg)
    assert api.port == cfg.transport.port and api.token_file == env.token_file and api.host == "127.0.0.1"


def test_missing_token_is_node_not_running(env):
    with pytest.raises(NodeNotRunning, match="no API token"):
        api_for(env, free_port()).get("/api/v1/status")


def test_refused_is_node_not_running(env):
    env.run.mkdir(parents=True)
    env.token_file.write_text(TOKEN)
    port = free_port()
    api = api_for(env, port)
    assert api.health() is False
    with pytest.raises(NodeNotRunning, match="connection refused"):
        api.get("/api/v1/status")
    with pytest.raises(NodeNotRunning):
        api.call("llm.chat", "1.0", {}, stream=True)


def test_health_and_query(env, gateway):
    api = api_for(env, gateway.port)
    assert api.health() is True
    assert api.get("/api/v1/traces", {"n": 5, "capability": None}) == {"traces": []}
    assert gateway.requests[-1]["query"] == {"n": "5"}


def test_error_body_becomes_hearthnet_error(env, gateway):
    with pytest.raises(HearthNetError) as e:
        api_for(env, gateway.port).get("/api/v1/nope")
    assert e.value.code == "not_found" and "no route" in e.value.message


def test_non_contract_error_body_maps_status(env, gateway):
    async def on_call(request, body):
        return web.Response(status=502, text="<html>bad gateway</html>")

    gateway.on_call = on_call
    with pytest.raises(HearthNetError) as e:
        api_for(env, gateway.port).call("x.y", "1.0", {})
    assert e.value.code == "internal_error" and "HTTP 502" in e.value.message and e.value.exit_code == 1


def test_sse_parser_handles_comments_crlf_and_multiline_data(env, gateway):
    async def on_call(request, body):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b": keep-alive\r\n\r\n")
        await resp.write(b"event: token\r\ndata: {\"text\":\r\ndata:  \"a\"}\r\n\r\n")
        await resp.write(b"event: tok")  # a frame split across writes
        await resp.write(b"en\ndata: {\"text\": \"b\"}\n\n")
        await resp.write(b"event: done\ndata: {\"ms\": 1}\n\n")
        await resp.write(b"event: token\ndata: {\"text\": \"after done\"}\n\n")
        return resp

    gateway.on_call = on_call
    frames = list(api_for(env, gateway.port).call("llm.chat", "1.0", {}, stream=True))
    assert frames == [("token", {"text": "a"}), ("token", {"text": "b"}), ("done", {"ms": 1})]


def test_sse_bad_json_frame_is_bad_response(env, gateway):
    async def on_call(request, body):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"event: token\ndata: {oops\n\n")
        return resp

    gateway.on_call = on_call
    with pytest.raises(HearthNetError) as e:
        list(api_for(env, gateway.port).call("llm.chat", "1.0", {}, stream=True))
    assert e.value.code == "bad_response"


def test_call_sends_json_body(env, gateway):
    async def on_call(request, body):
        return web.json_response({"output": body, "meta": {}})

    gateway.on_call = on_call
    out = api_for(env, gateway.port).call("experimental.echo", "1.0", {"input": {"ü": 1}})
    assert out == {"output": {"input": {"ü": 1}}, "meta": {}}
    assert json.loads(json.dumps(gateway.requests[-1]["body"])) == {"input": {"ü": 1}}


# ---- the HTTP/1.0 GET over the unix socket (no http.client) --------------------------

def test_http10_response_is_parsed_to_status_reason_and_body() -> None:
    from hearthnet.localapi import _parse_http10

    raw = b'HTTP/1.0 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}'
    assert _parse_http10(raw, "x") == (401, "Unauthorized", b"{}")


@pytest.mark.parametrize("raw", [b"", b"HTTP/1.0 200 OK\r\nContent-Len", b"garbage\r\n\r\n{}",
                                 b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\n{}"])
def test_a_cut_off_http10_response_is_connection_lost(raw: bytes) -> None:
    from hearthnet.errors import HearthNetError
    from hearthnet.localapi import _parse_http10

    with pytest.raises(HearthNetError) as exc:
        _parse_http10(raw, "x")
    assert exc.value.code == "connection_lost"
