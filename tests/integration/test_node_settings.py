"""The Settings tab's two local API routes on real nodes (README "The UI"): renaming a
running node (`POST /api/v1/settings/name`: config.toml, the signed /manifest at once,
discovery restarted, the node healthy), and a running node that founded its own solo
community joining another one by invite (`POST /api/v1/community/join`: preview, join,
the whole node restarted into the new community, the old community's directory kept),
with the refusals: a bad invite, a bad name, a node that is not alone in its community."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from hearthnet.testing.nodes import Node
from hearthnet.testing.waiting import wait_for

pytestmark = pytest.mark.integration
CORE = ("broker", "gateway", "ledger", "governance", "discovery")
# Only what these tests need: fewer processes on a shared 2-core machine.
LEAN = {"HEARTHNET_CHAT_ENABLED": "false", "HEARTHNET_MARKET_ENABLED": "false",
        "HEARTHNET_ALERTS_ENABLED": "false", "HEARTHNET_EMERGENCY_ENABLED": "false",
        "HEARTHNET_RAG_ENABLED": "false", "HEARTHNET_EMBEDDING_ENABLED": "false"}


def started(make_node: Any, name: str) -> Node:
    node = make_node(name)
    node.env.update(LEAN)
    node.init()
    node.start(wait_workers=CORE)
    return node


def post(node: Node, path: str, body: Any, timeout: float = 120) -> tuple[int, dict[str, Any]]:
    status, raw = node.request(path, "POST", body, timeout=timeout)
    return status, json.loads(raw)


def file_config(node: Node) -> dict[str, Any]:
    return tomllib.loads(node.config_file.read_text())


def peer_manifest(node: Node) -> dict[str, Any]:
    status, raw = node.request("/manifest", peer=True)
    assert status == 200, raw
    return json.loads(raw)


def status_or_none(node: Node) -> dict[str, Any] | None:
    """The node's status, or None while it restarts (its socket comes and goes)."""
    try:
        doc = node.api("/api/v1/status", timeout=5)
    except (OSError, ValueError):
        return None
    return doc if "community" in doc else None


def invite_for(inviter: Node, invitee: Node) -> str:
    node_id = invitee.cli_json("id")["node_id"]
    return inviter.cli_json("invite", "create", "--node-id", node_id, "--level", "member", "--ttl", "1",
                            "--out", str(invitee.root / "invite.png"))["invite"]


def test_rename_takes_effect_at_once_and_bad_names_change_nothing(make_node) -> None:
    node = started(make_node, "kitchen")
    note = "# the owner's own note: keep the UPS charged\n"
    node.config_file.write_text(node.config_file.read_text() + note)
    before = node.config_file.read_text()
    for bad in ("", "   ", "x" * 65, "two\nlines", 42):
        status, body = post(node, "/api/v1/settings/name", {"display_name": bad})
        assert (status, body["error"]) == (400, "bad_request"), (bad, body)
    assert node.config_file.read_text() == before
    old_pid = {w["program"]: w["pid"] for w in node.api("/api/v1/workers")["workers"]}["discovery"]

    status, body = post(node, "/api/v1/settings/name", {"display_name": "  Mill Street 12  "})
    assert status == 200, body
    assert body["ok"] and body["display_name"] == "Mill Street 12" and body["restarted"] == ["discovery"]
    assert peer_manifest(node)["display_name"] == "Mill Street 12"  # signed, served to peers, at once
    assert node.api("/manifest")["display_name"] == "Mill Street 12"
    assert node.api("/api/v1/status")["node"]["display_name"] == "Mill Street 12"
    cfg = file_config(node)
    assert cfg["node"]["display_name"] == "Mill Street 12"
    assert cfg["community"] == tomllib.loads(before)["community"]  # the other keys are kept
    assert node.config_file.read_text().endswith(note)  # and the owner's comments
    assert node.config_file.stat().st_mode & 0o777 == 0o600
    st = node.wait_healthy(CORE)
    assert {w["program"]: w["pid"] for w in st["workers"]}["discovery"] != old_pid


def test_a_solo_node_joins_a_community_from_its_running_node(make_node) -> None:
    a = started(make_node, "alice")
    b = started(make_node, "bob")
    a_cid = a.api("/api/v1/status")["community"]["community_id"]
    b_id = b.api("/api/v1/status")["node"]["node_id"]
    b_old = b.api("/api/v1/status")["community"]["community_id"]
    b_old_dir = b.root / "data" / "hearthnet" / "communities" / b_old
    assert b_old_dir.is_dir()

    # bad input: nothing is asked of anyone, nothing changes
    b_config = b.config_file.read_text()
    for body in ({"invite": ""}, {"invite": "hearthnet://v1/AAAA", "confirm": True}, {"invite": 5},
                 {"invite": "x", "confirm": "yes"}, ["not", "an", "object"]):
        status, reply = post(b, "/api/v1/community/join", body)
        assert status in (400, 403) and reply["error"] in ("invite_invalid", "bad_request"), (body, reply)
    assert b.config_file.read_text() == b_config
    invite = invite_for(a, b)

    status, reply = post(b, "/api/v1/community/join", {"invite": invite, "confirm": False})
    assert status == 200, reply
    preview = reply["preview"]
    assert preview["community_id"] == a_cid and preview["inviter_display_name"] == "alice"
    assert preview["level"] == "member" and preview["members"] == 1 and not preview["same_community"]
    assert reply["can_join"] is True and reply["why_not"] is None
    assert file_config(b)["community"]["community_id"] == b_old  # a preview writes nothing

    status, reply = post(b, "/api/v1/community/join", {"invite": invite, "confirm": True})
    assert status == 200, reply
    assert reply["restarting"] is True and reply["joined"]["community_id"] == a_cid
    assert reply["joined"]["level"] == "member"
    assert reply["old_community"]["community_id"] == b_old and reply["old_community"]["kept"] is True

    # the whole node restarts (supervisord in place: same `hearthnet run`, same token)
    wait_for(lambda: (s := status_or_none(b)) is not None and s["community"]["community_id"] == a_cid,
             90, 0.5, message="bob's status shows alice's community")
    b.wait_healthy(CORE)
    assert b.proc is not None and b.proc.poll() is None
    assert file_config(b)["community"]["community_id"] == a_cid
    assert b_old_dir.is_dir() and (b_old_dir / "events.sqlite").exists()  # the old community is kept
    members = {m["node_id"] for m in a.call("community.members.list", {"input": {}})[1]["output"]["members"]}
    assert b_id in members
    assert peer_manifest(b)["community_id"] == a_cid

    # alice is no longer alone: she may not switch to carol's community from her page
    c = started(make_node, "carol")
    to_carol = invite_for(c, a)
    status, reply = post(a, "/api/v1/community/join", {"invite": to_carol, "confirm": False})
    assert status == 200 and reply["can_join"] is False and "1 other member" in reply["why_not"], reply
    before = a.config_file.read_text()
    status, reply = post(a, "/api/v1/community/join", {"invite": to_carol, "confirm": True})
    assert (status, reply["error"]) == (409, "other_community"), reply
    assert "hearthnet erase" in reply.get("hint", ""), reply
    assert a.config_file.read_text() == before
    assert a.api("/api/v1/status")["community"]["community_id"] == a_cid
    # an invite for another device is refused by its addressee check
    status, reply = post(c, "/api/v1/community/join", {"invite": to_carol, "confirm": True})
    assert (status, reply["error"]) == (403, "invitee_mismatch"), reply
