"""Onboarding between real nodes (M13): `hearthnet id` on a fresh device, `invite create`
on a running node, `invite redeem` / `init --join` on the invited device (text, PNG of
the QR code), the joined event reaching the inviter's log and manifest, the new member
running and meeting the inviter through `peer add`, and every refusal with its exit code."""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from hearthnet.testing.nodes import Node
from hearthnet.testing.waiting import wait_for

pytestmark = pytest.mark.integration
CORE = ("broker", "gateway", "ledger", "discovery")


def node_id(node: Node) -> str:
    r = node.cli("id", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == {"ok", "schema_version", "node_id", "node_id_short", "id_text"}
    return doc["node_id"]


def invite(inviter: Node, invitee: str, *extra: str) -> dict[str, Any]:
    r = inviter.cli("invite", "create", "--node-id", invitee, "--level", "member", "--ttl", "1", "--json", *extra)
    assert r.returncode == 0, r.stderr + r.stdout
    return json.loads(r.stdout)


def error_of(r: Any) -> dict[str, Any]:
    return json.loads(r.stdout)["error"]


def community_dir(node: Node) -> Path:
    return next((node.root / "data" / "hearthnet" / "communities").iterdir())


def stored(node: Node) -> list[tuple[str, str, str]]:
    """(event_type, author, event_id) of every event in the node's log, read directly."""
    with sqlite3.connect(f"file:{community_dir(node) / 'events.sqlite'}?mode=ro", uri=True) as db:
        return db.execute("SELECT event_type, author, event_id FROM events ORDER BY lamport, event_id").fetchall()


def events_of(node: Node) -> list[dict[str, Any]]:
    status, body = node.call("community.log.events", {"input": {"since_lamport": 0}})
    assert status == 200, body
    return body["output"]["events"]


@pytest.fixture(scope="module")
def alice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = Node(tmp_path_factory.mktemp("alice"), "alice")
    try:
        node.init()
        node.cwd = node.root  # the default QR PNG lands in the working directory
        node.start(wait_workers=CORE)
        yield node
    finally:
        node.cleanup()


@pytest.fixture
def fresh(make_node: Any) -> Any:
    """A device with nothing on it yet (its cwd is its own root)."""
    def make(name: str) -> Node:
        node = make_node(name)
        node.root.mkdir(parents=True, exist_ok=True)
        node.cwd = node.root
        return node
    return make


def test_invite_redeem_join_and_meet(alice: Node, fresh: Any) -> None:
    bob = fresh("bob")
    bob_id = node_id(bob)
    assert [p.name for p in (bob.root / "data" / "hearthnet" / "keys").iterdir()] != []
    assert not bob.config_file.exists()  # `id` made the key and nothing else

    doc = invite(alice, bob_id)
    assert doc["invitee_node_id"] == bob_id and doc["level"] == "member" and not doc["reissued"]
    assert doc["invite"].startswith("hearthnet://v1/") and len(doc["invite"]) < 500
    # the PNG is in alice's community state dir, not in the directory she ran it from
    assert Path(doc["png"]).parent == community_dir(alice) / "invites" and Path(doc["png"]).is_file()
    assert not list(alice.root.glob("*.png"))
    again = invite(alice, bob_id)  # the same device again: the pending invite is re-issued
    assert again["reissued"] and again["event_id"] == doc["event_id"]

    # interactive: the preview names community, inviter and level; "n" changes nothing
    r = bob.cli("invite", "redeem", doc["invite"], input="n\n")
    assert r.returncode == 2, r.stderr + r.stdout
    assert "Join community \"alice's neighbourhood\"" in r.stderr and "invited by  alice" in r.stderr
    assert "as          member" in r.stderr and "nothing was changed" in r.stderr
    assert not bob.config_file.exists() and not (bob.root / "data" / "hearthnet" / "communities").exists()

    r = bob.cli("invite", "redeem", doc["invite"], "--yes", "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    joined = json.loads(r.stdout)
    assert joined["changed"] and joined["level"] == "member" and joined["inviter_display_name"] == "alice"
    alice_id = joined["inviter_node_id"]
    assert joined["community_id"] == alice_id  # alice founded it: her key is the root

    # bob's config names alice's community; his log holds genesis + invite + his join
    assert f'community_id = "{alice_id}"' in bob.config_file.read_text()
    log = stored(bob)
    kinds = [(t, a) for t, a, _ in log]
    assert kinds[:3] == [("community.created", alice_id), ("community.member.invited", alice_id),
                         ("community.member.joined", alice_id)]
    assert ("community.member.invited", alice_id) in kinds[3:]
    assert kinds[-1] == ("community.member.joined", bob_id)
    assert log[-1][2] == joined["joined_event_id"]

    # alice's ledger has bob's joined event and her manifest lists bob as a member
    mine = [e for e in events_of(alice) if e["event_type"] == "community.member.joined" and e["author"] == bob_id]
    assert [e["event_id"] for e in mine] == [joined["joined_event_id"]]
    manifest = json.loads((community_dir(alice) / "manifest.json").read_text())
    assert {"node_id": bob_id, "level": "member"}.items() <= next(
        m for m in manifest["members"] if m["node_id"] == bob_id).items()
    # ... and bob keeps a manifest that lists him too
    assert bob_id in [m["node_id"] for m in json.loads((community_dir(bob) / "manifest.json").read_text())["members"]]

    # a second redeem is a no-op; a new invite for a member is refused
    r = bob.cli("invite", "redeem", doc["invite"], "--yes")
    assert r.returncode == 0 and "already a member" in r.stdout, r.stderr
    r = alice.cli("invite", "create", "--node-id", bob_id, "--json")
    assert r.returncode == 1 and error_of(r)["code"] == "already_member", r.stdout

    # bob runs, and the two meet through `peer add` (multicast is off in tests)
    bob.start(wait_workers=CORE)
    r = bob.cli("peer", "add", f"127.0.0.1:{alice.port}", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["node_running"] is True, r.stderr + r.stdout
    r = alice.cli("peer", "add", f"127.0.0.1:{bob.port}")
    assert r.returncode == 0 and "contacting it now" in r.stdout, r.stderr
    r = bob.cli("status", "--json")
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["community"]["community_id"] == alice_id
    assert all(w["healthy"] for w in status["workers"] if w["program"] in CORE), status["workers"]
    wait_for(lambda: any(p["node_id"] == alice_id for p in bob.api("/api/v1/status")["peers"]),
             30, message="bob lists alice as a peer")


def test_init_join_and_png_redeem(alice: Node, fresh: Any) -> None:
    carol, dave = fresh("carol"), fresh("dave")
    carol_doc = invite(alice, node_id(carol))
    r = carol.cli("init", "--non-interactive", "--name", "carol", "--join", carol_doc["invite"], "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    result = json.loads(r.stdout)
    assert result["joined"] and result["changed"] and result["display_name"] == "carol"
    assert result["community_id"] == carol_doc["community_id"]
    assert stored(carol)[-1][:2] == ("community.member.joined", result["node_id"])

    png = alice.root / "for-dave.png"
    dave_doc = invite(alice, node_id(dave), "--out", str(png))
    assert dave_doc["png"] == str(png)
    r = dave.cli("invite", "redeem", str(png), "--yes")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "joined" in r.stdout
    assert f'community_id = "{dave_doc["community_id"]}"' in dave.config_file.read_text()


def test_refusals(alice: Node, fresh: Any) -> None:
    erin, frank, gina = fresh("erin"), fresh("frank"), fresh("gina")

    # expired: a 2-second invite, redeemed after it ran out
    short = invite(alice, node_id(erin), "--ttl", str(2 / 3600))
    time.sleep(3)
    r = erin.cli("invite", "redeem", short["invite"], "--yes", "--json")
    assert r.returncode == 4 and error_of(r)["code"] == "invite_expired", r.stdout
    assert not erin.config_file.exists()

    # made for another device
    r = frank.cli("invite", "redeem", short["invite"], "--yes")
    assert r.returncode == 4 and "no key yet" in r.stderr and "hearthnet id" in r.stderr, r.stderr
    node_id(frank)
    r = frank.cli("invite", "redeem", short["invite"], "--yes")
    assert r.returncode == 4 and "this invite is for node" in r.stderr, r.stderr
    r = frank.cli("invite", "redeem", short["invite"], "--yes", "--json")
    assert r.returncode == 4 and error_of(r)["code"] == "invitee_mismatch"

    # tampered: one character of the signed text changed
    good = invite(alice, node_id(gina))["invite"]
    bad = good[:40] + ("A" if good[40] != "A" else "B") + good[41:]
    r = gina.cli("invite", "redeem", bad, "--yes", "--json")
    assert r.returncode == 4 and error_of(r)["code"] == "invite_invalid"

    # a node already in another community refuses
    gina.init("gina")
    r = gina.cli("invite", "redeem", good, "--yes", "--json")
    assert r.returncode == 1 and error_of(r)["code"] == "other_community", r.stdout

    # inviting oneself, and inviting with the node stopped
    r = alice.cli("invite", "create", "--node-id", node_id(alice), "--json")
    assert r.returncode == 2 and error_of(r)["code"] == "usage"
    r = gina.cli("invite", "create", "--node-id", node_id(frank), "--json")
    assert r.returncode == 3 and error_of(r)["code"] == "node_not_running"
