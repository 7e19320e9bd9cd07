"""Direct chat between real nodes (issue 9): three nodes joined by invite on one host,
peered with `peer add`. A message to a stopped node is queued, carried by a neighbour
that cannot read it, delivered when the recipient comes back next to that neighbour
only, and its `delivered` receipt reaches the sender through the neighbour too. An online
pair gets `direct` delivery and the receipt back. Peers cannot call the owner's chat
capabilities; a forged receipt is refused by the ledger; no plaintext touches disk."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from hearthnet.identity.keys import short_node_id
from hearthnet.ledger.events import build_event
from hearthnet.services.chat.crypto import ChatCrypto, Undecryptable
from hearthnet.testing.hostile_peer import HostilePeer, refused
from hearthnet.testing.nodes import Node, key_of, start_three
from hearthnet.testing.waiting import wait_for

pytestmark = pytest.mark.integration

WORKERS = ("broker", "gateway", "ledger", "discovery", "governance", "chat")
SECRET_ONLINE = "generator at number 12, who needs power?"
SECRET_QUEUED = "is your grandmother OK? call me"


def body(inp: dict[str, Any]) -> dict[str, Any]:
    return {"params": {}, "input": inp}


def output(node: Node, cap: str, inp: dict[str, Any]) -> dict[str, Any]:
    status, doc = node.call(cap, body(inp))
    assert status == 200, (cap, doc)
    return doc["output"]


def history(node: Node, **inp: Any) -> list[dict[str, Any]]:
    try:
        return output(node, "chat.history", inp)["messages"]
    except (OSError, ValueError, AssertionError):
        return []


def log_events(node: Node, **inp: Any) -> list[dict[str, Any]]:
    return output(node, "community.log.events", inp)["events"]


def serves_deliver(node: Node, other_id: str) -> bool:
    try:
        caps = node.api("/api/v1/capabilities")["capabilities"]
    except (OSError, ValueError):
        return False
    return any(c["name"] == "chat.deliver" and not c["local"] and c["node_id"] == other_id for c in caps)


def files_holding(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            try:
                data = path.read_bytes()
            except OSError:
                continue
            found += [f"{path}: {n!r}" for n in needles if n in data]
    return found


@pytest.fixture
def mesh(make_node):
    return start_three(make_node, WORKERS)


def test_chat_direct_queued_store_and_forward_and_receipts(mesh, tmp_path):
    a, b, c, ids = mesh
    A, B, C = ids["alice"], ids["bob"], ids["carol"]
    wait_for(lambda: serves_deliver(a, B), 60, message="alice can reach bob's chat.deliver")

    # --- online: direct, through the CLI (a short id resolves), receipt straight back
    sent = a.cli_json("chat", "send", short_node_id(B)[8:15], SECRET_ONLINE)
    assert sent["delivered"] == "direct" and sent["to"] == B, sent
    assert set(sent) == {"event_id", "lamport", "delivered", "to", "to_name"}  # the --json contract
    got = wait_for(lambda: history(b, peer=A), 30, message="bob has alice's message")
    assert got[0]["body"] == SECRET_ONLINE and got[0]["decrypted"] and got[0]["direction"] == "in"
    wait_for(lambda: [m for m in history(a, peer=B) if m["delivered_at"]], 30,
             message="bob's delivered receipt on alice")
    # the founder's display name resolves on bob; an unknown one is not_found (exit 1)
    assert b.cli_json("chat", "send", "alice", "thanks!")["to"] == A
    unknown = b.cli("chat", "send", "nobody-by-that-name", "hi")
    assert unknown.returncode == 1 and "not a member" in unknown.stderr

    # --- carol is down: queued; bob's node stores the ciphertext
    c.stop()
    out = output(a, "chat.send", {"client_id": "q1", "recipient": C, "body": SECRET_QUEUED})
    assert out["delivered"] == "queued", out
    event_id = out["event_id"]
    wait_for(lambda: log_events(b, ids=[event_id]), 30, message="bob's log holds the queued message")
    a.stop()

    # --- bob carries it but cannot read it
    (held,) = log_events(b, ids=[event_id])
    assert held["data"]["enc"] == "x25519-xsalsa20-poly1305" and held["data"]["attachments"] == []
    assert SECRET_QUEUED not in str(held)
    assert all(m["event_id"] != event_id for m in history(b))
    with pytest.raises(Undecryptable):
        ChatCrypto(key_of(b)).decrypt(held)

    # --- carol comes back next to bob only (alice is stopped) and gets it through bob
    c.start(wait_workers=WORKERS)
    got = wait_for(lambda: [m for m in history(c, peer=A) if m["event_id"] == event_id], 60,
                   message="carol received alice's message via bob")
    assert got[0]["body"] == SECRET_QUEUED and got[0]["decrypted"] and got[0]["from"] == A
    assert c.cli_json("chat", "unread")["unread"] == [{"peer": A, "name": "alice", "count": 1}]
    listed = c.cli_json("chat", "ls", "--peer", "alice")
    assert set(listed) == {"messages", "marked_read"} and set(listed["messages"][0]) == {
        "event_id", "lamport", "from", "to", "body", "attachments", "created_at", "delivered_at", "read_at",
        "direction", "decrypted", "encrypted"}
    assert [m["body"] for m in listed["messages"]] == [SECRET_QUEUED] and listed["marked_read"] == 1
    assert c.cli_json("chat", "unread")["total"] == 0
    # carol's receipts reach bob; then carol leaves, so alice can learn them only from bob
    wait_for(lambda: len(log_events(b, event_types=["chat.message.delivered", "chat.message.read"],
                                    author=C)) == 2, 30, message="carol's receipts on bob")
    c.stop()
    a.start(wait_workers=WORKERS)
    msg = wait_for(lambda: [m for m in history(a, peer=C) if m["delivered_at"] and m["read_at"]], 60,
                   message="carol's receipts reach alice via bob")
    assert msg[0]["body"] == SECRET_QUEUED  # the sender reads its own message

    # --- a forged receipt (signed by bob, for alice's message to carol) is refused
    forged = build_event(key_of(b), held["community_id"], held["lamport"] + 5, "chat.message.delivered",
                         {"target_event_id": event_id, "delivered_at": "2026-12-01T12:00:00Z"})
    res = output(a, "community.log.ingest", {"events": [forged]})
    assert res["accepted"] == 0 and res["rejected_reasons"][0]["reason"] == "unauthorized", res

    # --- peers cannot call the owner's chat capabilities
    with HostilePeer(tmp_path / "as-bob", held["community_id"], kp=key_of(b)) as as_bob:
        for cap, inp in (("chat.history", {}), ("chat.send", {"recipient": B, "body": "x"}),
                         ("chat.read", {"peer": C}), ("chat.unread", {})):
            assert refused(lambda: as_bob.call(A, a.port, cap, body(inp))) == "unauthorized", cap

    # --- no plaintext, anywhere on any node's disk (logs, logs' rotations, the event log)
    a.stop()
    b.stop()
    leaks = []
    for n in (a, b, c):
        leaks += files_holding(n.root, [SECRET_ONLINE.encode(), SECRET_QUEUED.encode()])
    assert leaks == []
