"""`hearthnet market ls|post|done|search` against a fake gateway: what each sends, what
--json prints (stable keys), exit codes for the contract's errors, and --ttl parsing."""
from __future__ import annotations

import json

import pytest
from aiohttp import web

from hearthnet.cli.durations import parse_ttl
from hearthnet.errors import HearthNetError
from tests.unit.cli.conftest import invoke, json_result

POST = {"event_id": "01KB0000000000000000000000", "lamport": 7, "author": "ed25519:" + "A" * 42 + "Q",
        "category": "offer", "title": "Generator", "body": "2 kW", "location": None, "tags": ["power"],
        "quantity": 1, "created_at": "2026-12-01T10:00:00Z", "expires_at": "2026-12-08T10:00:00Z",
        "status": "active", "expiry_reason": None, "expired_via_event_id": None, "changed_lamport": 7}


def answer(gateway, replies):
    async def on_call(request, body):
        cap = request.headers["X-HearthNet-Capability"]
        reply = replies[cap]
        if "error" in reply:
            status = {"bad_request": 400, "unauthorized": 401, "not_found": 404}[reply["error"]]
            return web.json_response(reply, status=status)
        return web.json_response(reply)
    gateway.on_call = on_call


@pytest.mark.parametrize("text,seconds", [("3600", 3600), ("90s", 90), ("30m", 1800), ("12h", 43200),
                                          ("3d", 259200), ("1w", 604800), (" 2D ", 172800)])
def test_parse_ttl(text, seconds):
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "3 days", "-1h", "1.5h", "h"])
def test_parse_ttl_refuses(text):
    with pytest.raises(HearthNetError) as exc:
        parse_ttl(text)
    assert exc.value.exit_code == 2


def test_ls_json_and_table(runner, gateway):
    answer(gateway, {"market.list": {"output": {"posts": [POST], "max_lamport": 9}, "meta": {"ms": 0.2}}})
    result = invoke(runner, "market", "ls", "--category", "offer", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["count"] == 1 and doc["max_lamport"] == 9 and doc["posts"][0]["title"] == "Generator"
    assert set(doc["posts"][0]) == {"event_id", "lamport", "author", "category", "title", "body", "location",
                                    "tags", "quantity", "created_at", "expires_at", "status", "expiry_reason"}
    assert gateway.requests[-1]["body"]["input"] == {"status": "active", "limit": 500, "category": "offer"}
    table = invoke(runner, "market", "ls", "--status", "all")
    assert table.exit_code == 0 and "Generator ×1" in table.stdout and "#power" in table.stdout


def test_post_sends_a_client_id_and_parsed_ttl(runner, gateway):
    answer(gateway, {"market.post": {"output": {"event_id": POST["event_id"], "lamport": 7},
                                     "meta": {"deduplicated": False}}})
    result = invoke(runner, "market", "post", "--category", "offer", "--title", "Generator", "--body", "2 kW",
                    "--ttl", "3d", "--tag", "power", "--tag", "fuel", "--quantity", "2", "--json")
    assert result.exit_code == 0, result.output
    sent = gateway.requests[-1]["body"]["input"]
    assert sent["ttl_seconds"] == 259200 and sent["tags"] == ["power", "fuel"] and sent["quantity"] == 2
    doc = json_result(result.stdout)
    assert doc == {"event_id": POST["event_id"], "lamport": 7, "client_id": sent["client_id"], "deduplicated": False}
    assert len(sent["client_id"]) == 26


def test_post_errors_exit_with_the_contract_codes(runner, gateway):
    answer(gateway, {"market.post": {"error": "bad_request", "message": "input.ttl_seconds must be ..."}})
    result = invoke(runner, "market", "post", "--category", "offer", "--title", "x", "--ttl", "90d", "--json")
    assert result.exit_code == 2 and json.loads(result.stdout)["error"]["code"] == "bad_request"
    assert invoke(runner, "market", "post", "--category", "offer", "--title", "x", "--ttl", "soon").exit_code == 2


def test_done_expires_with_reason_fulfilled(runner, gateway):
    answer(gateway, {"market.expire": {"output": {"event_id": "01KB1111111111111111111111", "lamport": 8},
                                       "meta": {"deduplicated": False, "post_event_id": POST["event_id"]}}})
    result = invoke(runner, "market", "done", "01kb0000", "--json")
    assert result.exit_code == 0, result.output
    sent = gateway.requests[-1]["body"]["input"]
    assert sent["event_id"] == "01kb0000" and sent["reason"] == "fulfilled" and sent["client_id"]
    doc = json.loads(result.stdout)
    assert doc["post_event_id"] == POST["event_id"] and doc["reason"] == "fulfilled" and doc["already_expired"] is None


@pytest.mark.parametrize("code,exit_code", [("not_found", 1), ("unauthorized", 4), ("bad_request", 2)])
def test_done_errors(runner, gateway, code, exit_code):
    answer(gateway, {"market.expire": {"error": code, "message": "no"}})
    assert invoke(runner, "market", "done", "01KB0000").exit_code == exit_code


def test_search_says_which_mode(runner, gateway):
    meta = {"search_mode": "substring", "search_reason": "no node in the mesh serves embed.text", "ms": 1}
    answer(gateway, {"market.search": {"output": {"posts": [{**POST, "score": 1.0}], "max_lamport": 7},
                                       "meta": meta}})
    result = invoke(runner, "market", "search", "generator", "-k", "3")
    assert result.exit_code == 0, result.output
    assert "substring: no node in the mesh serves embed.text" in result.stdout
    assert gateway.requests[-1]["body"]["input"] == {"query": "generator", "k": 3}
    doc = json.loads(invoke(runner, "market", "search", "generator", "--json").stdout)
    assert doc["search_mode"] == "substring" and doc["posts"][0]["score"] == 1.0 and doc["query"] == "generator"


def test_no_node_exits_3(runner):
    assert invoke(runner, "market", "ls").exit_code == 3
