"""`hearthnet chat send|ls|unread` against the fake gateway: name resolution, exit codes,
what is sent, and `ls` marking exactly the shown messages read."""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.unit.cli.conftest import FULL_ID, invoke, json_result

ME = FULL_ID
ANNA1 = "ed25519:" + "B" * 42 + "Q"
ANNA2 = "ed25519:" + "C" * 42 + "Q"
BEN = "ed25519:" + "D" * 42 + "Q"
MEMBERS = [
    {"node_id": ME, "node_id_short": "ed25519:AAAA-AAAA-AAAA-AAAA", "display_name": "kitchen", "level": "anchor"},
    {"node_id": ANNA1, "node_id_short": "ed25519:BQQU-EQQU-EQQU-EQQU", "display_name": "Anna", "level": "member"},
    {"node_id": ANNA2, "node_id_short": "ed25519:CCCC-CCCC-CCCC-CCCC", "display_name": "anna", "level": "member"},
    {"node_id": BEN, "node_id_short": "ed25519:DDDD-DDDD-DDDD-DDDD", "display_name": "Ben", "level": "member"},
]


def msg(event_id: str, frm: str, to: str, body: str, read_at: str | None = None) -> dict[str, Any]:
    return {"event_id": event_id, "lamport": int(event_id[-1]), "from": frm, "to": to, "body": body,
            "attachments": [], "created_at": "2026-12-01T10:00:00Z", "delivered_at": None, "read_at": read_at,
            "direction": "out" if frm == ME else "in", "decrypted": True, "encrypted": True}


def fake(gateway: Any, answers: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []

    async def on_call(request: web.Request, body: dict[str, Any]) -> web.Response:
        cap = request.headers["X-HearthNet-Capability"]
        calls.append((cap, body["input"]))
        if cap == "community.members.list":
            return web.json_response({"output": {"node_id": ME, "members": MEMBERS, "revoked": []}, "meta": {}})
        answer = answers[cap]
        if isinstance(answer, tuple):
            return web.json_response(answer[1], status=answer[0])
        return web.json_response({"output": answer, "meta": {}})

    gateway.on_call = on_call
    return calls


def test_send_resolves_a_unique_name_and_prints_json(runner, gateway) -> None:
    calls = fake(gateway, {"chat.send": {"event_id": "E1", "lamport": 9, "delivered": "queued"}})
    result = invoke(runner, "chat", "send", "ben", "need a generator?", "--attach", "blake3:" + "a" * 64, "--json")
    assert result.exit_code == 0, result.output
    assert json_result(result.stdout) == {"event_id": "E1", "lamport": 9, "delivered": "queued", "to": BEN,
                                         "to_name": "Ben"}
    cap, inp = calls[-1]
    assert cap == "chat.send" and inp["recipient"] == BEN and inp["body"] == "need a generator?"
    assert inp["attachments"] == [{"cid": "blake3:" + "a" * 64, "name": ""}] and len(inp["client_id"]) == 32


def test_send_by_short_id_prefix(runner, gateway) -> None:
    calls = fake(gateway, {"chat.send": {"event_id": "E1", "lamport": 9, "delivered": "direct"}})
    result = invoke(runner, "chat", "send", "cccc-cc", "hi")
    assert result.exit_code == 0, result.output
    assert "delivered to their node" in result.stdout and calls[-1][1]["recipient"] == ANNA2


def test_an_ambiguous_name_is_refused_with_the_choices(runner, gateway) -> None:
    calls = fake(gateway, {})
    result = invoke(runner, "chat", "send", "ANNA", "hi")
    assert result.exit_code == 2
    assert "BQQU-EQQU-EQQU-EQQU" in result.stderr and "CCCC-CCCC-CCCC-CCCC" in result.stderr
    assert [c for c, _ in calls] == ["community.members.list"]  # nothing sent


def test_an_unknown_member_is_not_found_exit_1(runner, gateway) -> None:
    fake(gateway, {})
    result = invoke(runner, "chat", "send", "zed", "hi", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == "not_found"


def test_node_errors_keep_their_exit_codes(runner, gateway) -> None:
    fake(gateway, {"chat.send": (400, {"error": "bad_request", "message": "empty message"})})
    assert invoke(runner, "chat", "send", "ben", " ").exit_code == 2


def test_ls_prints_conversations_and_marks_only_the_shown_unread_read(runner, gateway) -> None:
    history = [msg("E1", BEN, ME, "is grandma OK?"), msg("E2", ME, BEN, "yes, thanks"),
               msg("E3", ANNA1, ME, "old", read_at="2026-12-01T10:00:00Z"), msg("E4", BEN, ME, "good")]
    calls = fake(gateway, {"chat.history": {"messages": history}, "chat.read": {"marked": 2, "event_ids": ["E1", "E4"]}})
    result = invoke(runner, "chat", "ls")
    assert result.exit_code == 0, result.output
    assert "— Ben (ed25519:" in result.stdout and "Ben: is grandma OK?" in result.stdout
    assert "2 marked read" in result.stdout
    assert calls[-1] == ("chat.read", {"event_ids": ["E1", "E4"]})


def test_ls_for_one_peer_in_json(runner, gateway) -> None:
    calls = fake(gateway, {"chat.history": {"messages": [msg("E2", ME, BEN, "yes")]}})
    result = invoke(runner, "chat", "ls", "--peer", "Ben", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["marked_read"] == 0 and doc["messages"][0]["body"] == "yes"
    assert ("chat.history", {"limit": 200, "peer": BEN}) in calls
    assert all(c != "chat.read" for c, _ in calls)  # nothing unread shown: nothing marked


def test_unread_names_the_peers(runner, gateway) -> None:
    fake(gateway, {"chat.unread": {"unread": [{"peer": BEN, "count": 2}], "total": 2}})
    result = invoke(runner, "chat", "unread", "--json")
    assert result.exit_code == 0, result.output
    assert json_result(result.stdout) == {"unread": [{"peer": BEN, "count": 2, "name": "Ben"}], "total": 2}
