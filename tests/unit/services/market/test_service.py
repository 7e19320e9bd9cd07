"""MarketService on a real event log: posting (idempotent on client_id, bounded input,
ttl limit, owner only), expiring (author, moderator, refused for others; unknown post),
the stale sweeper (trusted/anchor nodes only), listing and searching (semantic through a
fake embedder with a vector cache; substring when nobody embeds or embedding fails)."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest

from hearthnet.errors import HearthNetError
from hearthnet.identity import keys
from hearthnet.services.market.view import CREATED, EXPIRED


def market_events(community, kind=None):
    types = [kind] if kind else [CREATED, EXPIRED, "market.post.updated"]
    return community.log.events(0, None, types)


def code_of(fn, *args, **kw) -> str:
    with pytest.raises(HearthNetError) as exc:
        fn(*args, **kw)
    return exc.value.code


# ---------------------------------------------------------------- market.post


def test_post_appears_in_the_log_and_the_view(market, community):
    out = market.post(quantity=2, location={"lat": 51.5, "lng": 6.2, "label": "porch"})
    [ev] = market_events(community, CREATED)
    assert ev["event_id"] == out["event_id"] and ev["author"] == market.node_id and ev["data"]["quantity"] == 2
    listed = market.call("market.list", {})["output"]
    assert [p["event_id"] for p in listed["posts"]] == [out["event_id"]]
    post = listed["posts"][0]
    assert post["status"] == "active" and post["quantity"] == 2 and listed["max_lamport"] == ev["lamport"]
    created = datetime.fromisoformat(post["created_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(post["expires_at"].replace("Z", "+00:00"))
    assert expires - created == timedelta(seconds=604800)  # the default ttl


def test_same_client_id_gives_the_same_event_back(market, community):
    first = market.call("market.post", {"client_id": "k1", "category": "request", "title": "Insulin"})
    again = market.call("market.post", {"client_id": "k1", "category": "request", "title": "Insulin"})
    assert again["output"] == first["output"] and again["meta"]["deduplicated"] is True
    assert first["meta"]["deduplicated"] is False and len(market_events(community, CREATED)) == 1
    # still true for a view rebuilt from the log (a restarted worker)
    market.start()
    assert market.call("market.post", {"client_id": "k1", "category": "request", "title": "x"})["output"] == \
        first["output"]


def test_concurrent_calls_with_one_client_id_post_once(market, community):
    handler = {c.name: c.handler for c in market.svc.capabilities()}["market.post"]

    async def both():
        from hearthnet.bus.service import Request

        def req():
            return Request("market.post", "1.0", {"params": {}, "input": {"client_id": "same", "category": "info",
                                                                          "title": "Water at the school"}},
                           caller=market.node_id)
        return await asyncio.gather(handler(req()), handler(req()))

    a, b = asyncio.run(both())
    assert a["output"] == b["output"] and len(market_events(community, CREATED)) == 1


def test_ttl_limits(make_market):
    m = make_market(max_ttl_seconds=86400)
    assert m.post(1, ttl_seconds=86400)["event_id"]
    assert code_of(m.post, 2, ttl_seconds=86401) == "bad_request"
    assert code_of(m.post, 3, ttl_seconds=0) == "bad_request"


@pytest.mark.parametrize("bad", [
    {"client_id": ""}, {"client_id": None}, {"client_id": "x" * 129}, {"category": "weapons"}, {"title": ""},
    {"title": "   "}, {"title": "x" * 201}, {"body": "x" * 4001}, {"body": 3}, {"tags": ["x"] * 11},
    {"tags": ["x" * 33]}, {"tags": "tools"}, {"quantity": 0}, {"quantity": -1}, {"quantity": 1.5},
    {"quantity": "3"}, {"location": {"lat": 200, "lng": 0}}, {"location": {"lat": 1, "lng": 1, "x": 1}},
    {"location": "home"}, {"ttl_seconds": "3d"}, {"ttl_seconds": True},
])
def test_bad_post_input_is_bad_request(market, community, bad):
    inp = {"client_id": "c", "category": "offer", "title": "Ladder", "body": "", **bad}
    assert code_of(market.call, "market.post", inp) == "bad_request"
    assert market_events(community, CREATED) == []


def test_mutating_calls_are_for_the_owner_only(market):
    stranger = keys.generate().node_id_full
    assert code_of(market.call, "market.post", {"client_id": "c", "category": "offer", "title": "x"},
                   caller=stranger) == "unauthorized"
    post = market.post()
    assert code_of(market.call, "market.expire", {"client_id": "e", "event_id": post["event_id"],
                                                  "reason": "fulfilled"}, caller=stranger) == "unauthorized"
    caps = {c.name: c.trust_required for c in market.svc.capabilities()}
    assert caps == {"market.list": "member", "market.search": "member", "market.post": "self",
                    "market.expire": "self"}


@pytest.mark.parametrize("bad", [{"status": "sold"}, {"limit": 0}, {"limit": 501}, {"category": "x"},
                                 {"since_lamport": -1}, {"tags": "x"}])
def test_bad_list_input(market, bad):
    assert code_of(market.call, "market.list", bad) == "bad_request"


# ---------------------------------------------------------------- market.expire


def test_author_marks_fulfilled_idempotently(market, community):
    post = market.post()
    inp = {"client_id": "done-1", "event_id": post["event_id"][:12].lower(), "reason": "fulfilled"}
    out = market.call("market.expire", inp)
    assert market.call("market.expire", inp)["output"] == out["output"]
    assert len(market_events(community, EXPIRED)) == 1
    listed = market.call("market.list", {"status": "fulfilled"})["output"]["posts"]
    assert [p["event_id"] for p in listed] == [post["event_id"]] and listed[0]["expiry_reason"] == "fulfilled"
    assert market.call("market.list", {})["output"]["posts"] == []
    again = market.call("market.expire", {**inp, "client_id": "done-2"})  # already closed: no second event
    assert again["meta"]["already_expired"] == "fulfilled" and again["output"] == out["output"]
    assert len(market_events(community, EXPIRED)) == 1


def test_expire_unknown_or_ambiguous_post(market):
    assert code_of(market.call, "market.expire", {"client_id": "e", "event_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
                                                  "reason": "fulfilled"}) == "not_found"
    a, b = market.post(1), market.post(2)
    common = "".join(x for x, y in zip(a["event_id"], b["event_id"]) if x == y)[:6]
    if a["event_id"].startswith(common) and b["event_id"].startswith(common):
        assert code_of(market.call, "market.expire", {"client_id": "e", "event_id": common,
                                                      "reason": "fulfilled"}) == "bad_request"
    for bad in ({"event_id": "abc"}, {"event_id": None}, {"reason": "sold"}, {"client_id": ""}):
        inp = {"client_id": "e", "event_id": a["event_id"], "reason": "fulfilled", **bad}
        assert code_of(market.call, "market.expire", inp) == "bad_request"


def test_a_member_may_not_expire_anothers_post(community, levels, make_market):
    author = make_market()
    post = author.post()
    bob = community.add_member("bob")
    levels[bob.node_id_full] = "member"
    as_bob = make_market(bob)
    for reason in ("fulfilled", "stale", "user_request"):
        assert code_of(as_bob.call, "market.expire", {"client_id": f"x-{reason}", "event_id": post["event_id"],
                                                      "reason": reason}) == "unauthorized"
    # without the friendly check (level unknown) the ledger refuses it all the same
    del levels[bob.node_id_full]
    with pytest.raises(HearthNetError) as exc:
        as_bob.call("market.expire", {"client_id": "y", "event_id": post["event_id"], "reason": "withdrawn"})
    assert exc.value.code == "unauthorized" and "author" in exc.value.message
    assert market_events(community, EXPIRED) == []


def test_a_moderator_may_expire_but_not_for_user_request(community, levels, make_market):
    bob = community.add_member("bob")
    post = make_market(bob).post()
    mod = community.add_member("mod", level="trusted")
    levels[mod.node_id_full] = "trusted"
    as_mod = make_market(mod)
    assert code_of(as_mod.call, "market.expire", {"client_id": "m1", "event_id": post["event_id"],
                                                  "reason": "user_request"}) == "unauthorized"
    as_mod.call("market.expire", {"client_id": "m2", "event_id": post["event_id"], "reason": "withdrawn"})
    assert as_mod.call("market.list", {"status": "expired"})["output"]["posts"][0]["expiry_reason"] == "withdrawn"


# ---------------------------------------------------------------- the sweeper


def test_sweeper_runs_only_on_trusted_or_anchor_nodes(community, levels, make_market):
    anchor = make_market()
    bob = community.add_member("bob")
    levels[bob.node_id_full] = "member"
    as_bob = make_market(bob)
    post = as_bob.post(ttl_seconds=60)
    later = datetime.now(timezone.utc) + timedelta(minutes=5)
    asyncio.run(anchor.catch_up())
    assert asyncio.run(as_bob.svc.sweep(later)) == 0  # a plain member never sweeps
    assert asyncio.run(anchor.svc.sweep(datetime.now(timezone.utc))) == 0  # nothing past due yet
    assert asyncio.run(anchor.svc.sweep(later)) == 1
    assert asyncio.run(anchor.svc.sweep(later)) == 0  # once
    [ev] = market_events(community, EXPIRED)
    assert ev["author"] == anchor.node_id and ev["data"] == {"client_id": f"stale-{post['event_id']}",
                                                              "target_event_id": post["event_id"], "reason": "stale"}
    asyncio.run(as_bob.catch_up())
    assert as_bob.call("market.list", {"status": "expired"})["output"]["posts"][0]["expiry_reason"] == "stale"


# ---------------------------------------------------------------- market.search


def seed_board(m):
    m.post(1, title="Generator for the street", body="petrol generator, power for fridges", tags=["power"])
    m.post(2, title="Fresh bread", body="sourdough loaves from the bakery", category="info")
    m.post(3, title="Baby formula needed", body="infant formula for a newborn", category="request")


def test_semantic_search_ranks_by_meaning_and_caches_vectors(market):
    seed_board(market)
    market.bus.embedding = True
    out = market.call("market.search", {"query": "generator power", "k": 2})
    meta, posts = out["meta"], out["output"]["posts"]
    assert meta["search_mode"] == "semantic" and meta["model"] == "test-hash-embed" and "peer" in meta["search_reason"]
    assert len(posts) == 2 and posts[0]["title"] == "Generator for the street"
    assert posts[0]["score"] >= posts[1]["score"]
    assert meta["embedded"] == 3 and meta["not_embedded"] == 0
    before = market.bus.embedded_texts
    again = market.call("market.search", {"query": "bread"})
    assert again["output"]["posts"][0]["title"] == "Fresh bread" and again["meta"]["embedded"] == 0
    assert market.bus.embedded_texts == before + 1  # only the query
    market.post(4, title="Torch batteries", body="AA batteries")
    market.call("market.search", {"query": "batteries"})
    assert market.bus.embedded_texts == before + 1 + 2  # the query and the one new post


def test_a_board_larger_than_the_cache_ranks_its_newest_posts(make_market):
    m = make_market(cache_entries=2)
    seed_board(m)  # 3 posts; the oldest is the generator
    m.bus.embedding = True
    out = m.call("market.search", {"query": "generator power"})
    assert out["meta"]["not_embedded"] == 1 and out["meta"]["embedded"] == 2
    assert "Generator for the street" not in [p["title"] for p in out["output"]["posts"]]
    again = m.call("market.search", {"query": "bread"})  # the cache holds both: nothing evicted, nothing embedded
    assert again["meta"]["embedded"] == 0 and again["meta"]["not_embedded"] == 1


def test_a_search_out_of_time_ranks_what_it_has_and_the_rest_fills_in_the_background(market, monkeypatch):
    import hearthnet.services.market.service as service
    from hearthnet.bus.service import Request

    monkeypatch.setattr(service, "EMBED_BATCH", 1)
    seed_board(market)
    market.bus.embedding, market.bus.embed_hang_after = True, 2  # the query and one post, then it hangs
    handler = market.svc.search

    def req(seconds: float) -> Request:
        return Request("market.search", "1.0", {"params": {}, "input": {"query": "bread"}}, caller=market.node_id,
                       deadline=time.monotonic() + seconds)

    async def searches():
        first = await handler(req(service.SEARCH_MARGIN_SECONDS + 0.5))  # runs out of time on the 2nd post
        market.bus.embed_hang_after = None
        await market.svc._warming
        return first, await handler(req(10))

    first, second = asyncio.run(searches())
    assert first["meta"]["search_mode"] == "semantic"
    assert (first["meta"]["embedded"], first["meta"]["not_embedded"]) == (1, 2)
    assert second["meta"]["embedded"] == 0 and second["meta"]["not_embedded"] == 0
    assert second["output"]["posts"][0]["title"] == "Fresh bread"


def test_substring_when_no_node_embeds(market):
    seed_board(market)
    out = market.call("market.search", {"query": "FORMULA newborn"})
    meta, posts = out["meta"], out["output"]["posts"]
    assert meta["search_mode"] == "substring" and "no node in the mesh serves embed.text" in meta["search_reason"]
    assert [p["title"] for p in posts] == ["Baby formula needed"] and posts[0]["score"] == pytest.approx(0.8)
    assert market.call("market.search", {"query": "zebra"})["output"]["posts"] == []


def test_substring_when_embedding_fails(market):
    seed_board(market)
    market.bus.embedding, market.bus.embed_fail = True, "internal_error"
    meta = market.call("market.search", {"query": "bread"})["meta"]
    assert meta["search_mode"] == "substring" and "failed: internal_error" in meta["search_reason"]


def test_search_leaves_out_closed_posts(market):
    seed_board(market)
    post = market.post(9, title="Bread machine")
    market.call("market.expire", {"client_id": "d", "event_id": post["event_id"], "reason": "fulfilled"})
    titles = [p["title"] for p in market.call("market.search", {"query": "bread"})["output"]["posts"]]
    assert titles == ["Fresh bread"]


@pytest.mark.parametrize("bad", [{"query": ""}, {"query": "  "}, {"query": "x" * 501}, {"query": 3},
                                 {"query": "x", "k": 0}, {"query": "x", "k": 101}])
def test_bad_search_input(market, bad):
    assert code_of(market.call, "market.search", bad) == "bad_request"


def test_not_ready_is_a_plain_error(community, levels):
    from tests.unit.services.market.conftest import Market

    m = Market(community, community.root, levels)
    m.svc.READY_WAIT_SECONDS = 0.01  # this instance only
    assert code_of(m.call, "market.list", {}) == "partition"
