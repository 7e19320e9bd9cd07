"""The marketplace between three real nodes joined by invite (single host, discovery
multicast off, `peer add` between them): a post on A reaches C by sync; `market done` on A
reaches C as fulfilled; a plain member's expiry of another's post is refused; a forged
`market.post.updated` is refused by the ledger with its reason, appended locally on B and
received on C; `market search` is semantic while a node in the mesh embeds (A) and by
substring once no node does (HEARTHNET_EMBEDDING_ENABLED=false on every node).

The nodes are shared by the module's tests (starting three nodes is the slow part); the
last test restarts A without its embedding worker."""
from __future__ import annotations

import pytest

from hearthnet.ledger.events import build_event
from hearthnet.services.embedding.available import minilm_unavailable
from hearthnet.testing.nodes import Node, join_by_invite, key_of
from hearthnet.testing.waiting import wait_for

pytestmark = pytest.mark.integration

CORE = ("broker", "gateway", "ledger", "discovery", "market")
NO_EMBEDDING = {"HEARTHNET_EMBEDDING_ENABLED": "false"}


def listed(node: Node, status: str = "all") -> dict[str, dict]:
    code, body = node.call("market.list", {"params": {}, "input": {"status": status, "limit": 500}})
    return {p["event_id"]: p for p in body["output"]["posts"]} if code == 200 else {}


def embedders(node: Node) -> list[dict]:
    return [c for c in node.api("/api/v1/capabilities")["capabilities"] if c["name"] == "embed.text"]


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    root = tmp_path_factory.mktemp("market")
    a, b, c = Node(root / "a", "alice"), Node(root / "b", "bob"), Node(root / "c", "carol")
    nodes = (a, b, c)
    try:
        a.init()
        embedding = minilm_unavailable() is None
        if not embedding:
            a.env.update(NO_EMBEDDING)
        a.start(wait_workers=CORE + (("embedding",) if embedding else ()))
        for newcomer in (b, c):
            join_by_invite(a, newcomer)
            newcomer.env.update(NO_EMBEDDING)
            newcomer.start(wait_workers=CORE)
        for x, y in ((a, b), (b, a), (a, c), (c, a), (b, c), (c, b)):
            x.peer_add(y)
        for n in nodes:
            wait_for(lambda n=n: len(n.peers()) == 2, 60, message=f"{n.name} sees both peers")
        yield a, b, c, embedding
    finally:
        for n in nodes:
            n.cleanup()


def post(node: Node, title: str, body: str, *extra: str) -> str:
    return node.cli_json("market", "post", "--category", "offer", "--title", title, "--body", body, *extra)["event_id"]


def test_a_post_on_a_reaches_c_and_done_propagates_as_fulfilled(board):
    a, b, c, _ = board
    post_id = post(a, "Ladder to lend", "3 m aluminium ladder", "--tag", "tools", "--quantity", "1", "--ttl", "3d")
    wait_for(lambda: post_id in listed(c), 30, message="alice's post on carol's board")
    seen = c.cli_json("market", "ls")
    [mine] = [p for p in seen["posts"] if p["event_id"] == post_id]
    assert mine["status"] == "active" and mine["quantity"] == 1 and mine["tags"] == ["tools"]
    assert mine["author"] == a.api("/api/v1/status")["node"]["node_id"]

    done = a.cli_json("market", "done", post_id[:16])
    assert done["post_event_id"] == post_id and done["reason"] == "fulfilled"
    wait_for(lambda: listed(c).get(post_id, {}).get("status") == "fulfilled", 30,
             message="the post fulfilled on carol's board")
    fulfilled = c.cli_json("market", "ls", "--status", "fulfilled")["posts"]
    assert [p["event_id"] for p in fulfilled] == [post_id] and fulfilled[0]["expiry_reason"] == "fulfilled"
    assert post_id not in {p["event_id"] for p in c.cli_json("market", "ls")["posts"]}


def test_a_member_may_not_expire_anothers_post(board):
    a, b, c, _ = board
    post_id = post(a, "Spare tent", "for 4 people")
    wait_for(lambda: post_id in listed(b), 30, message="alice's post on bob's board")
    r = b.cli("market", "done", post_id, "--json")
    assert r.returncode == 4, r.stdout + r.stderr
    assert '"unauthorized"' in r.stdout
    # past the worker's early check, B's own ledger refuses it too
    code, body = b.call("community.log.append", {"params": {}, "input": {"event_type": "market.post.expired", "data": {
        "client_id": "not-mine", "target_event_id": post_id, "reason": "fulfilled"}}})
    assert code == 401 and body["error"] == "unauthorized" and "trusted" in body["message"], body
    assert listed(b)[post_id]["status"] == "active"


def test_forged_update_is_refused_locally_and_when_received(board):
    a, b, c, _ = board
    post_id = post(a, "Water filter", "ceramic, works without power")
    wait_for(lambda: post_id in listed(b) and post_id in listed(c), 30, message="the post on bob's and carol's boards")
    data = {"client_id": "forged-1", "target_event_id": post_id, "fields": {"title": "SOLD (not really)"}}
    code, body = b.call("community.log.append", {"params": {}, "input": {"event_type": "market.post.updated",
                                                                          "data": data}})
    assert code == 401 and body["error"] == "unauthorized" and "author" in body["message"], body

    status = c.api("/api/v1/status")
    head = c.api("/bus/v1/call", "POST", {"params": {}, "input": {}},
                 headers={"X-HearthNet-Capability": "community.log.heads"})["output"]["head"]
    forged = build_event(key_of(b), status["community"]["community_id"], head + 1, "market.post.updated",
                         {**data, "client_id": "forged-2"})
    code, body = c.call("community.log.ingest", {"params": {}, "input": {"events": [forged]}})
    assert code == 200, body
    out = body["output"]
    assert out["accepted"] == 0 and out["rejected"] == 1
    [reason] = out["rejected_reasons"]
    assert reason["event_id"] == forged["event_id"] and reason["reason"] == "unauthorized"
    assert "author" in reason["detail"]
    assert listed(c)[post_id]["title"] == "Water filter"


def test_search_semantic_with_an_embedder_in_the_mesh_then_substring_without(board):
    a, b, c, embedding = board
    gen = post(a, "Generator", "petrol generator, can run a fridge for a few hours")
    post(a, "Fresh bread", "sourdough loaves, come by the bakery")
    post(a, "Baby formula needed", "infant formula for a newborn")
    wait_for(lambda: gen in listed(c), 30, message="the posts on carol's board")
    if embedding:
        wait_for(lambda: any(not e["local"] for e in embedders(c)), 60, message="alice's embed.text seen by carol")
        found = c.cli_json("market", "search", "electricity", "-k", "3")
        assert found["search_mode"] == "semantic", found
        assert found["model"] and "a peer" in found["search_reason"]
        assert found["posts"][0]["event_id"] == gen and found["posts"][0]["score"] > 0
        a.stop()
        a.env.update(NO_EMBEDDING)
        a.start(wait_workers=CORE)
        c.peer_add(a)  # carol fetches alice's new manifest now, not at her next refresh
        wait_for(lambda: embedders(c) == [], 90, message="no embed.text left in carol's mesh")
    words = c.cli_json("market", "search", "generator fridge")
    assert words["search_mode"] == "substring" and "no node in the mesh serves embed.text" in words["search_reason"]
    assert words["posts"][0]["event_id"] == gen
    assert c.cli_json("market", "search", "electricity")["posts"] == []
    human = c.cli("market", "search", "bread")
    assert human.returncode == 0 and "substring" in human.stdout and "Fresh bread" in human.stdout
