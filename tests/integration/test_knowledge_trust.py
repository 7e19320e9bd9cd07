"""Who may use a node's knowledge through its peer port (issue 8), on real nodes: a stranger
claiming the community gets nothing from embed.text, rag.*; a current member may query the
shared corpus but never sees `personal` and may not ingest (trusted only) nor reindex
(self only); once revoked,
that member gets nothing either. The member's signed requests come from its own key (a
node that was invited and joined, never run), sent through the product's PeerClient."""
from __future__ import annotations

from pathlib import Path

import pytest

from hearthnet.identity.manifest import DEFAULT_POLICY
from hearthnet.testing.hostile_peer import HostilePeer, refused
from hearthnet.testing.nodes import Node, join_by_invite, key_of
from hearthnet.testing.peer_abuse import wait_until_member

pytestmark = pytest.mark.integration
WORKERS = ("broker", "gateway", "ledger", "governance", "file", "embedding", "rag")
GUIDE = "# Flood plan\n\n## Shelter\n\nThe shelter is the school gymnasium on Lindenweg.\n"
DIARY = "# Notes\n\n## Medication\n\nMy insulin is in the blue box in the fridge.\n"


def ingest(node: Node, path: Path, corpus: str) -> str:
    cid = node.cli_json("file", "add", str(path))["files"][0]["cid"]
    status, body = node.call("rag.ingest", {"params": {"corpus": corpus}, "input": {"doc_cid": cid}}, timeout=300)
    assert status == 200, body
    return cid


def body(params: dict, inp: dict) -> dict:
    return {"params": params, "input": inp}


def test_strangers_members_and_the_revoked_at_the_knowledge_capabilities(make_node, tmp_path: Path) -> None:
    alice, member = make_node("alice"), make_node("member")
    alice.init()
    alice.start(wait_workers=WORKERS)
    policy = {**DEFAULT_POLICY, "min_signatures_to_revoke": 1}  # alice alone may revoke
    status, reply = alice.call("community.log.append", {"params": {}, "input": {
        "event_type": "community.policy.updated", "data": {"policy": policy}}})
    assert status == 200, reply
    member_id = join_by_invite(alice, member)  # its key is a member; the node itself never runs
    status = alice.api("/api/v1/status")
    alice_id, community = status["node"]["node_id"], status["community"]["community_id"]
    (tmp_path / "guide.md").write_text(GUIDE)
    (tmp_path / "diary.md").write_text(DIARY)
    ingest(alice, tmp_path / "guide.md", "guide")
    ingest(alice, tmp_path / "diary.md", "personal")
    model = "all-MiniLM-L6-v2"
    query = body({"corpus": "guide"}, {"query": "where is the shelter?"})
    calls = {
        "embed.text": body({"model": model}, {"texts": ["shelter"]}),
        "rag.query": query,
        "rag.list_corpora": body({}, {}),
        "rag.ingest": body({"corpus": "guide"}, {"doc_cid": "blake3:" + "0" * 64}),
        "rag.ask": body({}, {"question": "where is the shelter?", "corpus": "guide"}),
        "rag.reindex": body({"corpus": "guide"}, {}),
    }

    with HostilePeer(tmp_path / "stranger", community) as stranger:
        for cap, b in calls.items():
            assert refused(lambda: stranger.call(alice_id, alice.port, cap, b)) == "unauthorized", cap

    with HostilePeer(tmp_path / "as-member", community, kp=key_of(member)) as as_member:
        wait_until_member(alice, key_of(member))
        # the shared corpus answers (so the refusals below are the rules, not a dead path)
        got = as_member.call(alice_id, alice.port, "rag.query", query)["output"]["chunks"]
        assert got and "gymnasium" in got[0]["text"]
        assert as_member.call(alice_id, alice.port, "embed.text", calls["embed.text"])["output"]["dim"] == 384
        listed = as_member.call(alice_id, alice.port, "rag.list_corpora", body({}, {}))["output"]["corpora"]
        assert [c["name"] for c in listed] == ["guide"]
        personal = body({"corpus": "personal"}, {"query": "where is my insulin?"})
        assert refused(lambda: as_member.call(alice_id, alice.port, "rag.query", personal)) == "not_found"
        assert refused(lambda: as_member.call(alice_id, alice.port, "rag.ingest", calls["rag.ingest"])) == "unauthorized"
        assert refused(lambda: as_member.call(alice_id, alice.port, "rag.reindex", calls["rag.reindex"])) == "unauthorized"

        done = alice.cli_json("member", "revoke", member_id, "--reason", "compromised", "--yes")
        assert done["status"] == "revoked", done
        for cap, b in calls.items():
            assert refused(lambda: as_member.call(alice_id, alice.port, cap, b)) in ("revoked", "unauthorized"), cap
    # the owner still has both corpora
    status, mine = alice.call("rag.list_corpora", body({}, {}))
    assert status == 200 and sorted(c["name"] for c in mine["output"]["corpora"]) == ["guide", "personal"]
