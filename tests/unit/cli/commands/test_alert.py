"""`hearthnet alert send|ls|show|ack` against a fake gateway: what each sends, what --json
prints (stable keys), EXERCISE marked in the human output, exit codes (no headline → 2
with nothing sent, the ledger's refusal → 4 with its reason)."""
from __future__ import annotations

import json

from aiohttp import web

from tests.unit.cli.conftest import invoke, json_result

A, B, C = ("ed25519:" + x * 42 + "Q" for x in "ABC")
ALERT = {"event_id": "01KB0000000000000000000000", "lamport": 7, "identifier": "hearthnet-1", "sender": A,
         "sender_name": "alice", "sent": "2026-12-01T10:00:00Z", "status": "Exercise", "msg_type": "Alert",
         "urgency": "Immediate", "severity": "Severe", "certainty": "Likely", "headline": "Evacuation drill",
         "description": "", "instruction": "Meet at the school", "area": "Maple St",
         "expires": "2026-12-01T16:00:00Z", "references": [], "active": True, "superseded_by": None,
         "cancelled": False, "exercise": True,
         "rollup": {"ok": [{"node_id": B, "name": "bob", "at": "2026-12-01T10:01:00Z", "note": ""}],
                    "need_help": [], "other": [], "not_heard": [{"node_id": C, "name": "carol"}]},
         "my_ack": None}


def answer(gateway, replies):
    async def on_call(request, body):
        reply = replies[request.headers["X-HearthNet-Capability"]]
        if "error" in reply:
            status = {"bad_request": 400, "unauthorized": 401, "not_found": 404}[reply["error"]["code"]]
            return web.json_response(reply, status=status)
        return web.json_response(reply)
    gateway.on_call = on_call


def test_send_json_and_what_it_sends(runner, gateway):
    answer(gateway, {"alert.send": {"output": {"event_id": ALERT["event_id"], "lamport": 7,
                                               "identifier": "hearthnet-1", "pushed": [B]}, "meta": {}}})
    result = invoke(runner, "alert", "send", "--headline", "Boil water", "--test", "--severity", "Moderate",
                    "--cancel", "01KA00000000", "--expires", "2h", "--json")
    assert result.exit_code == 0, result.output
    assert json_result(result.stdout) == {"event_id": ALERT["event_id"], "lamport": 7, "identifier": "hearthnet-1",
                                         "pushed": [B]}
    assert gateway.requests[-1]["body"]["input"] == {
        "headline": "Boil water", "status": "Test", "severity": "Moderate", "msg_type": "Cancel",
        "references": ["01KA00000000"], "expires_in_seconds": 7200}
    human = invoke(runner, "alert", "send", "--headline", "Drill", "--exercise")
    assert human.exit_code == 0 and "Sent EXERCISE alert" in human.stdout


def test_send_without_headline_sends_nothing(runner, gateway):
    answer(gateway, {})
    result = invoke(runner, "alert", "send", "--description", "x", "--json")
    assert result.exit_code == 2 and json.loads(result.stdout)["error"]["code"] == "bad_request"
    assert gateway.requests == []


def test_send_refused_by_the_ledger_exits_4_with_the_reason(runner, gateway):
    reason = "emergency.alert.issued refused: only a trusted or anchor member may issue an emergency alert"
    answer(gateway, {"alert.send": {"error": {"code": "unauthorized", "message": reason}}})
    result = invoke(runner, "alert", "send", "--headline", "Fake", "--json")
    assert result.exit_code == 4 and "only a trusted or anchor member" in result.stdout


def test_ls_and_show_mark_exercise(runner, gateway):
    answer(gateway, {"alert.list": {"output": {"alerts": [ALERT]}, "meta": {}}})
    doc = json_result(invoke(runner, "alert", "ls", "--active", "--json").stdout)
    assert doc == {"alerts": [ALERT], "count": 1}
    assert gateway.requests[-1]["body"]["input"] == {"active_only": True}
    table = invoke(runner, "alert", "ls")
    assert table.exit_code == 0 and "EXERCISE" in table.stdout and "Evacuation drill" in table.stdout
    shown = invoke(runner, "alert", "show", "01KB0000")
    assert "NOT A REAL EMERGENCY" in shown.stdout and "carol" in shown.stdout and "bob" in shown.stdout
    assert gateway.requests[-1]["body"]["input"] == {"event_id": "01KB0000"}
    assert json_result(invoke(runner, "alert", "show", "01KB0000", "--json").stdout) == {"alert": ALERT}


def test_ack(runner, gateway):
    answer(gateway, {"alert.ack": {"output": {"event_id": "01KC0000000000000000000000", "lamport": 9,
                                              "pushed": [A]}, "meta": {}}})
    result = invoke(runner, "alert", "ack", "01KB0000", "--status", "need_help", "--note", "cellar", "--json")
    assert result.exit_code == 0 and set(json_result(result.stdout)) == {"event_id", "lamport", "pushed"}
    assert gateway.requests[-1]["body"]["input"] == {"event_id": "01KB0000", "status": "need_help", "note": "cellar"}
    assert invoke(runner, "alert", "ack", "01KB0000", "--status", "fine").exit_code == 2
