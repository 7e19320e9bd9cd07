"""Members and governance on three real nodes (invite + `peer add`, multicast off): the
founder promotes two members with `member promote`; revoking one of them needs two
trusted signatures (the founder lowers the policy from 3, so three nodes suffice); the
first owner's request is refused by the other node, whose owner has not approved it, and
the second owner's approval completes it; every other node lists the target as revoked."""
from __future__ import annotations

from typing import Any

import pytest

from hearthnet.identity import keys as idkeys
from hearthnet.identity.manifest import DEFAULT_POLICY
from hearthnet.testing.nodes import join_by_invite
from hearthnet.testing.waiting import wait_for
from hearthnet.transport.client import PeerCallError, PeerClient
from hearthnet.transport.pinning import PinStore
from hearthnet.transport.signing import SYNC_HEADS

pytestmark = pytest.mark.integration

CORE = ("broker", "gateway", "ledger", "governance", "discovery")


def members(node) -> dict[str, Any]:
    return node.cli_json("member", "ls")


def level_on(node, node_id: str) -> str | None:
    return next((m["level"] for m in members(node)["members"] if m["node_id"] == node_id), None)


def remote_caps(node, peer_id: str) -> set[str]:
    caps = node.api("/api/v1/capabilities")["capabilities"]
    return {c["name"] for c in caps if not c["local"] and c["node_id"] == peer_id}


def signed_heads_as(sender, receiver, receiver_id: str, community_id: str) -> str:
    """GET /sync/v1/heads signed with `sender`'s device key: the error code, or "answered"."""
    import asyncio

    kp = idkeys.load(sender.root / "data" / "hearthnet" / "keys")

    async def go() -> str:
        async with PeerClient(kp, community_id, PinStore(sender.root / "probe_pins.json")) as client:
            try:
                await client.get_signed(receiver_id, ("127.0.0.1", receiver.port), "/sync/v1/heads", SYNC_HEADS)
            except PeerCallError as exc:
                return exc.code
            return "answered"

    return asyncio.run(go())


@pytest.fixture
def trio(make_node):
    a, b, c = make_node("alice"), make_node("bob"), make_node("carol")
    a.init()
    a.start(wait_workers=CORE)
    policy = {**DEFAULT_POLICY, "min_signatures_to_revoke": 2}
    status, body = a.call("community.log.append", {"params": {}, "input": {
        "event_type": "community.policy.updated", "data": {"policy": policy}}})
    assert status == 200, body
    ids = {a: a.api("/api/v1/status")["node"]["node_id"]}
    for newcomer in (b, c):
        ids[newcomer] = join_by_invite(a, newcomer)
        newcomer.start(wait_workers=CORE)
    for x, y in ((a, b), (b, a), (a, c), (c, a), (b, c), (c, b)):
        r = x.cli("peer", "add", f"127.0.0.1:{y.port}")
        assert r.returncode == 0, r.stderr + r.stdout
    for x in (a, b, c):  # every node reaches the others' governance capabilities
        for y in (a, b, c):
            if x is not y:
                wait_for(lambda x=x, y=y: "community.revoke" in remote_caps(x, ids[y]), timeout=60,
                         message=f"{x.name} to route community.revoke to {y.name}")
    return a, b, c, ids


def test_promote_then_revoke_with_co_signatures(trio):
    a, b, c, ids = trio
    listing = members(a)
    assert listing["policy"]["revoke"] == 2 and len(listing["members"]) == 3
    assert listing["pending_invites"] == []

    for node in (b, c):  # by short id
        short = next(m["node_id_short"] for m in listing["members"] if m["node_id"] == ids[node])
        out = a.cli_json("member", "promote", short, "--yes")
        assert out["status"] == "promoted" and out["signers"] == [ids[a]], out
    for x in (a, b, c):
        for y in (b, c):
            wait_for(lambda x=x, y=y: level_on(x, ids[y]) == "trusted", timeout=60,
                     message=f"{x.name} to see {y.name} trusted")

    # alice alone: bob's node is asked, but bob's owner has not approved
    first = a.cli_json("member", "revoke", ids[c], "--reason", "compromised", "--yes")
    assert first["status"] == "pending" and (first["signatures"], first["needed"]) == (1, 2), first
    assert first["waiting_for"] == [ids[b]]
    refusal = first["refused"][0]
    assert refusal["node_id"] == ids[b] and refusal["error"] == "unauthorized", first
    assert "has not approved revoking" in refusal["message"]
    assert [(p["action"], p["target_node_id"]) for p in members(a)["approvals"]] == [("revoke", ids[c])]
    assert level_on(a, ids[c]) == "trusted"

    # bob approves too: his node collects alice's co-signature and records the revocation
    done = b.cli_json("member", "revoke", ids[c], "--reason", "compromised", "--yes")
    assert done["status"] == "revoked" and sorted(done["signers"]) == sorted([ids[a], ids[b]]), done
    # On the revoking node it counts at once (no waiting): no peer, no route, no answer.
    status = b.api("/api/v1/status")
    assert ids[c] not in {p["node_id"] for p in status["peers"]}
    assert remote_caps(b, ids[c]) == set()
    assert signed_heads_as(c, b, ids[b], status["community"]["community_id"]) == "revoked"
    for node in (a, b):
        listing = wait_for(lambda node=node: (lambda doc: doc if any(r["node_id"] == ids[c] for r in doc["revoked"])
                                              else None)(members(node)),
                           timeout=60, message=f"{node.name} to list carol as revoked")
        entry = next(r for r in listing["revoked"] if r["node_id"] == ids[c])
        assert entry["revoked_by"] == ids[b] and entry["revoked_at"]
        assert ids[c] not in {m["node_id"] for m in listing["members"]}

    # a revoked node's owner is told so, not a traceback
    r = a.cli("member", "revoke", ids[c], "--reason", "other", "--yes", "--json")
    assert r.returncode == 1 and "revoked" in r.stdout
