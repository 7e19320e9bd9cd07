from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from hearthnet.identity import keys
from tests.unit.cli.conftest import invoke, json_result

ALICE, BOB, BOB2, DAVE = (keys.generate() for _ in range(4))


def member(kp: keys.KeyPair, name: str, level: str) -> dict[str, Any]:
    return {"node_id": kp.node_id_full, "node_id_short": kp.node_id_short, "level": level,
            "added_at": "2026-11-30T10:00:00Z", "added_by": ALICE.node_id_full, "display_name": name}


LISTING = {
    "community_id": ALICE.node_id_full, "community_name": "Maple Street", "node_id": ALICE.node_id_full,
    "members": [member(ALICE, "alice", "anchor"), member(BOB, "bob", "trusted"), member(BOB2, "bobby", "member")],
    "revoked": [{"node_id": DAVE.node_id_full, "node_id_short": DAVE.node_id_short,
                 "revoked_at": "2026-11-30T11:00:00Z", "revoked_by": ALICE.node_id_full, "display_name": "dave"}],
    "pending_invites": [{"event_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "invitee_node_id": DAVE.node_id_full,
                         "display_name": "frank", "level": "member", "expires_at": "2026-12-01T10:00:00Z",
                         "invited_by": ALICE.node_id_full}],
    "policy": {"invite": 1, "promote": 1, "demote": 3, "revoke": 3, "default_member_can_invite": True},
    "approvals": [{"action": "revoke", "target_node_id": BOB.node_id_full, "reason": "other",
                   "approved_at": "2026-11-30T10:00:00Z", "expires_at": "2026-12-07T10:00:00Z"}],
}
PENDING = {"status": "pending", "action": "revoke", "target_node_id": BOB.node_id_full,
           "signers": [ALICE.node_id_full], "signatures": 1, "needed": 3, "waiting_for": [BOB2.node_id_full],
           "refused": [{"node_id": BOB2.node_id_full, "error": "unauthorized",
                        "message": "the owner of this node has not approved revoking X"}]}


def serve(gateway, answers: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []

    async def on_call(request: web.Request, body: dict[str, Any]) -> web.Response:
        cap = request.headers["X-HearthNet-Capability"]
        seen.append((cap, body["input"]))
        answer = answers[cap]
        if "error" in answer:
            return web.json_response(answer, status=401 if answer["error"] == "unauthorized" else 400)
        return web.json_response({"output": answer, "meta": {}})

    gateway.on_call = on_call
    return seen


def test_member_ls(runner, gateway):
    serve(gateway, {"community.members.list": LISTING})
    r = invoke(runner, "member", "ls", "--json")
    assert r.exit_code == 0, r.output
    doc = json_result(r.stdout)
    assert set(doc) == {"community_id", "community_name", "node_id", "members", "revoked", "pending_invites",
                        "policy", "approvals"}
    assert [m["display_name"] for m in doc["members"]] == ["alice", "bob", "bobby"]
    human = invoke(runner, "member", "ls")
    assert human.exit_code == 0
    for text in ("Maple Street", "bob", "trusted", DAVE.node_id_short, "frank", "revoke 3", "you approved"):
        assert text in human.stdout


def test_member_revoke_resolves_a_short_id_and_reports_pending(runner, gateway):
    seen = serve(gateway, {"community.members.list": LISTING, "community.revoke": PENDING})
    short = BOB.node_id_short.removeprefix("ed25519:")[:9].lower()
    r = invoke(runner, "member", "revoke", short, "--reason", "compromised", "--yes", "--json")
    assert r.exit_code == 0, r.output
    assert seen[-1] == ("community.revoke", {"target_node_id": BOB.node_id_full, "reason": "compromised"})
    doc = json_result(r.stdout)
    assert set(doc) == {"status", "action", "target_node_id", "event_id", "signers", "signatures", "needed",
                        "waiting_for", "refused"}
    assert doc["status"] == "pending" and doc["event_id"] is None and doc["waiting_for"] == [BOB2.node_id_full]
    human = invoke(runner, "member", "revoke", BOB.node_id_full, "--reason", "other", "--yes")
    assert "1 of 3 signatures" in human.stdout and "has not approved" in human.stdout


def test_member_promote_and_demote_pass_the_level(runner, gateway):
    done = {"status": "promoted", "action": "promote", "target_node_id": BOB2.node_id_full, "event_id": "E1",
            "signers": [ALICE.node_id_full], "signatures": 1, "needed": 1}
    seen = serve(gateway, {"community.members.list": LISTING, "community.promote": done,
                           "community.demote": {**done, "status": "demoted", "action": "demote"}})
    r = invoke(runner, "member", "promote", "bobby", "--level", "trusted", "--yes")
    assert r.exit_code == 0 and "promoted" in r.stdout
    assert seen[-1] == ("community.promote", {"target_node_id": BOB2.node_id_full, "new_level": "trusted"})
    r = invoke(runner, "member", "demote", BOB.node_id_full, "--yes", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["waiting_for"] == []
    assert seen[-1] == ("community.demote", {"target_node_id": BOB.node_id_full})


def test_member_revoke_asks_first(runner, gateway):
    seen = serve(gateway, {"community.members.list": LISTING, "community.revoke": PENDING})
    r = invoke(runner, "member", "revoke", "bob", "--reason", "other", input="n\n")
    assert r.exit_code == 2 and [c for c, _ in seen] == ["community.members.list"]
    r = invoke(runner, "member", "revoke", "bob", "--reason", "other", "--json", input="")  # end of input: no
    assert r.exit_code == 2 and json.loads(r.stdout)["error"]["code"] == "user_abort"
    r = invoke(runner, "member", "revoke", "bob", "--reason", "other", input="y\n")
    assert r.exit_code == 0 and seen[-1][0] == "community.revoke"


def test_member_resolution_errors(runner, gateway):
    serve(gateway, {"community.members.list": LISTING})
    r = invoke(runner, "member", "revoke", keys.generate().node_id_full, "--reason", "other", "--yes", "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["error"]["code"] == "not_found"
    r = invoke(runner, "member", "revoke", DAVE.node_id_full, "--reason", "other", "--yes", "--json")
    assert r.exit_code == 1 and "revoked at" in json.loads(r.stdout)["error"]["message"]
    r = invoke(runner, "member", "revoke", "ed25519:", "--reason", "other", "--yes")
    assert r.exit_code == 1


def test_member_ambiguous_prefix_is_a_usage_error(runner, gateway):
    twins = [{**LISTING["members"][1], "node_id_short": "ed25519:ABCD-EFGH-IJKL-MNOP"},
             {**LISTING["members"][2], "node_id_short": "ed25519:ABCD-EFGX-IJKL-MNOP"}]
    seen = serve(gateway, {"community.members.list": {**LISTING, "members": twins}, "community.revoke": PENDING})
    r = invoke(runner, "member", "revoke", "abcd-efg", "--reason", "other", "--yes")
    assert r.exit_code == 2 and "matches 2 members" in r.stderr
    r = invoke(runner, "member", "revoke", "ABCDEFGX", "--reason", "other", "--yes", "--json")
    assert r.exit_code == 0  # one more character: only bobby
    assert seen[-1] == ("community.revoke", {"target_node_id": BOB2.node_id_full, "reason": "other"})
def test_member_revoke_unauthorized_and_usage(runner, gateway):
    serve(gateway, {"community.members.list": LISTING,
                    "community.revoke": {"error": "unauthorized", "message": "this node is member"}})
    r = invoke(runner, "member", "revoke", "bob", "--reason", "other", "--yes", "--json")
    assert r.exit_code == 4 and json.loads(r.stdout)["error"]["code"] == "unauthorized"
    assert invoke(runner, "member", "revoke", "bob").exit_code == 2  # --reason is required
    assert invoke(runner, "member", "revoke", "bob", "--reason", "bored").exit_code == 2
    assert invoke(runner, "member", "promote", "bob", "--level", "king").exit_code == 2


def test_member_ls_without_a_node(runner, env):
    r = invoke(runner, "member", "ls", "--json")
    assert r.exit_code == 3 and json.loads(r.stdout)["error"]["code"] == "node_not_running"
