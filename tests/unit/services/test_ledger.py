"""LedgerService in-process: capability handlers called directly (no broker)."""
from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable

import pytest

from hearthnet.config import Config, load_config
from hearthnet.errors import HearthNetError
from hearthnet.identity import keys
from hearthnet.identity.manifest import read_community_manifest, rfc3339
from hearthnet.ledger.errors import LedgerError
from hearthnet.ledger.events import build_admission, build_event
from hearthnet.node_init import DefaultsPrompter, InitOptions, init_node
from hearthnet.bus.service import Request
from hearthnet.services.ledger import Fanout, LedgerService
from tests.unit.ledger.conftest import post_data
from tests.unit.xdg_fixture import isolated_xdg  # noqa: F401  (autouse)


@pytest.fixture
def cfg() -> Config:
    init_node(InitOptions(name="kitchen", profile="hearth", interactive=False, config_path=None),
              prompt=DefaultsPrompter())
    return load_config()


def run(cfg: Config, body: Callable[[LedgerService], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        svc = LedgerService(cfg)
        await svc.start()
        try:
            return await body(svc)
        finally:
            await svc.stop()

    return asyncio.run(main())


def req(cap: str, inp: dict[str, Any] | None = None, stream: bool = False) -> Request:
    return Request(capability=cap, version="1.0", body={"params": {}, "input": inp or {}}, stream=stream)


def test_capabilities_are_beta_self_and_complete(cfg: Config) -> None:
    caps = {c.name: c for c in LedgerService(cfg).capabilities()}
    assert set(caps) == {"community.log.append", "community.log.ingest", "community.log.heads", "community.log.ids",
                         "community.log.events", "community.log.subscribe", "community.manifest.get",
                         "community.members.get", "community.log.frontier", "community.log.digest"}
    for c in caps.values():
        d = c.descriptor()
        assert d["stability"] == "beta" and d["trust_required"] == "self" and d["version"] == "1.0"
    assert caps["community.log.subscribe"].descriptor()["streams"] is True
    assert not caps["community.log.subscribe"].idempotent and not caps["community.log.append"].idempotent


def test_append_then_read_back(cfg: Config) -> None:
    async def body(svc: LedgerService) -> None:
        out = await svc.append(req("community.log.append", {"event_type": "market.post.created", "data": post_data()}))
        ev = out["output"]["event"]
        assert ev["lamport"] == 4 and ev["author"] == svc.kp.node_id_full
        heads = (await svc.heads(req("community.log.heads")))["output"]
        assert heads.pop("digest").startswith("blake3:")
        assert heads == {"community_id": cfg.community.community_id, "head": 4, "count": 4,
                         "heads_by_type": {"community.created": 1, "community.member.invited": 2,
                                           "community.member.joined": 3, "market.post.created": 4}}
        assert (await svc.ids(req("community.log.ids", {"since_lamport": 3})))["output"]["ids"] == [ev["event_id"]]
        found = await svc.events(req("community.log.events", {"event_types": ["market.post.created"]}))
        assert found["output"]["events"] == [ev]
        limited = await svc.events(req("community.log.events", {"limit": 2, "author": svc.kp.node_id_full}))
        assert [e["lamport"] for e in limited["output"]["events"]] == [1, 2]

    run(cfg, body)


def test_heads_are_kept_until_the_log_changes(cfg: Config) -> None:
    async def body(svc: LedgerService) -> None:
        first = (await svc.heads(req("community.log.heads")))["output"]
        calls = {"n": 0}
        real = svc.log.digest

        def counted() -> str:
            calls["n"] += 1
            return real()

        svc.log.digest = counted  # type: ignore[method-assign]
        assert (await svc.heads(req("community.log.heads")))["output"] == first and calls["n"] == 0
        await svc.append(req("community.log.append", {"event_type": "market.post.created", "data": post_data()}))
        after = (await svc.heads(req("community.log.heads")))["output"]
        assert calls["n"] == 1 and after["count"] == first["count"] + 1 and after["head"] == first["head"] + 1
        assert after["digest"] == real() != first["digest"]

    run(cfg, body)


def test_digest_and_ranged_ids(cfg: Config) -> None:
    from hearthnet.ledger.digest import range_hash

    async def body(svc: LedgerService) -> None:
        await svc.append(req("community.log.append", {"event_type": "market.post.created", "data": post_data()}))
        ranges = [{"lamport_lo": 0, "lamport_hi": 2}, {"lamport_lo": 3, "lamport_hi": 9}]
        out = (await svc.digest(req("community.log.digest", {"ranges": ranges})))["output"]["ranges"]
        ids = (await svc.ids(req("community.log.ids", {"ranges": ranges[1:]})))["output"]["ids"]
        assert [r["count"] for r in out] == [2, 2] and out[1]["hash"] == range_hash(ids)
        every = (await svc.ids(req("community.log.ids", {"since_lamport": 0})))["output"]["ids"]
        assert (await svc.ids(req("community.log.ids", {"ranges": ranges})))["output"]["ids"] == every
        for bad in ({}, {"ranges": []}, {"ranges": ranges[::-1]}, {"ranges": [{"lamport_lo": 1}]}):
            with pytest.raises(HearthNetError) as err:
                await svc.digest(req("community.log.digest", bad))
            assert err.value.code == "bad_request"
        with pytest.raises(HearthNetError):
            await svc.ids(req("community.log.ids", {"ranges": "all"}))

    run(cfg, body)


@pytest.mark.parametrize("inp, code", [
    ({"event_type": "community.created", "data": {}}, "bad_request"),
    ({"event_type": "community.policy.updated", "data": {"policy": {"federation_enabled": False}}}, "bad_request"),
    ({"event_type": "nope", "data": {}}, "bad_request"),
    ({"event_type": "market.post.created"}, "bad_request"),
])
def test_append_refuses_bad_input(cfg: Config, inp: dict[str, Any], code: str) -> None:
    async def body(svc: LedgerService) -> None:
        with pytest.raises(HearthNetError) as err:
            await svc.append(req("community.log.append", inp))
        assert err.value.code == code

    run(cfg, body)


def test_append_refuses_types_this_node_may_not_author(cfg: Config) -> None:
    async def body(svc: LedgerService) -> None:
        view = svc.log.view
        created = {"name": "Again", "founder_node_id": svc.kp.node_id_full, "policy": dict(view.policy)}
        with pytest.raises(HearthNetError) as err:
            await svc.append(req("community.log.append", {"event_type": "community.created", "data": created}))
        assert err.value.code == "unauthorized" and svc.log.count() == 3

    run(cfg, body)


def test_ingest_of_a_join_rewrites_the_manifest(cfg: Config) -> None:
    path = cfg.community_manifest_path
    assert len(read_community_manifest(path)["members"]) == 1

    async def body(svc: LedgerService) -> dict[str, Any]:
        newcomer = keys.generate()
        invite = (await svc.append(req("community.log.append", {"event_type": "community.member.invited", "data": {
            "invitee_node_id": newcomer.node_id_full, "display_name": "attic", "initial_level": "member",
            "expires_at": rfc3339(datetime.now(timezone.utc) + timedelta(hours=1))}})))["output"]["event"]
        joined = build_event(newcomer, svc.log.community_id, invite["lamport"] + 1, "community.member.joined",
                             {"invite_event_id": invite["event_id"], "node_manifest": {"node_id": newcomer.node_id_full},
                              "admission": build_admission(svc.kp, invite["event_id"], newcomer.node_id_full)})
        stranger = build_event(keys.generate(), svc.log.community_id, 9, "file.cid.unpinned", {"cid": "x"})
        out = (await svc.ingest(req("community.log.ingest", {"events": [joined, stranger, joined]})))["output"]
        assert out == {"accepted": 1, "rejected": 1, "duplicates": 1, "new_head_lamport": 5,
                       "rejected_reasons": [{"event_id": stranger["event_id"], "reason": "unknown_author"}]}
        got = (await svc.manifest_get(req("community.manifest.get")))["output"]["manifest"]
        return {"newcomer": newcomer.node_id_full, "served": got}

    result = run(cfg, body)
    on_disk = read_community_manifest(path)  # verifies the anchor's signature
    assert {m["node_id"] for m in on_disk["members"]} == {cfg.community.community_id, result["newcomer"]}
    assert on_disk["head_lamport"] == 5 and result["served"]["members"] == on_disk["members"]


def test_subscribers_get_every_event_stored_after_they_subscribed(cfg: Config) -> None:
    async def body(svc: LedgerService) -> None:
        streams = [await svc.subscribe(req("community.log.subscribe", stream=True)) for _ in range(50)]
        filtered = await svc.subscribe(req("community.log.subscribe", {"event_types": ["file.cid.unpinned"]},
                                           stream=True))
        for s in streams + [filtered]:
            event, data = await s.__anext__()
            assert event == "subscribed" and data["head"] == 3
        assert len(svc.fanout.queues) == 51
        post = (await svc.append(req("community.log.append", {"event_type": "market.post.created",
                                                              "data": post_data()})))["output"]["event"]
        unpin = (await svc.append(req("community.log.append", {"event_type": "file.cid.unpinned",
                                                               "data": {"cid": "x"}})))["output"]["event"]
        for s in streams:
            assert [await s.__anext__(), await s.__anext__()] == [("event", post), ("event", unpin)]
        assert await filtered.__anext__() == ("event", unpin)
        for s in streams + [filtered]:
            await s.aclose()  # the caller left
        assert svc.fanout.queues == set()

    run(cfg, body)


def test_subscribe_must_be_a_stream(cfg: Config) -> None:
    async def body(svc: LedgerService) -> None:
        with pytest.raises(HearthNetError) as err:
            await svc.subscribe(req("community.log.subscribe"))
        assert err.value.code == "bad_request"

    run(cfg, body)


def test_a_slow_subscriber_is_cut_off_not_buffered_forever() -> None:
    async def body() -> None:
        fan = Fanout(backlog=3)
        slow, fast = fan.add(), fan.add()
        for n in range(5):
            fan.publish(n + 1, {"n": n})
            while not fast.empty():
                fast.get_nowait()
        assert slow not in fan.queues and fast in fan.queues
        assert [slow.get_nowait() for _ in range(4)] == [(1, {"n": 0}), (2, {"n": 1}), (3, {"n": 2}), None]

    asyncio.run(body())


def test_start_refuses_a_corrupt_log_and_leaves_it(cfg: Config) -> None:
    path = cfg.community.state_dir / "events.sqlite"
    path.write_bytes(b"\0" * 64 + path.read_bytes()[64:])
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(LedgerError) as err:
        asyncio.run(LedgerService(cfg).start())
    assert err.value.code == "db_corrupt" and str(path) in err.value.message
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_a_founder_without_a_log_gets_the_genesis_at_start(cfg: Config) -> None:
    (cfg.community.state_dir / "events.sqlite").unlink()  # a node initialised before the ledger existed

    async def body(svc: LedgerService) -> list[str]:
        return [e["event_type"] for e in svc.log.events()]

    assert run(cfg, body) == ["community.created", "community.member.invited", "community.member.joined"]
    manifest = json.loads(cfg.community_manifest_path.read_text())
    assert manifest["head_lamport"] == 0  # the genesis manifest is untouched


def test_no_second_genesis_once_membership_has_changed(cfg: Config) -> None:
    async def grow(svc: LedgerService) -> None:
        newcomer = keys.generate()
        invite = (await svc.append(req("community.log.append", {"event_type": "community.member.invited", "data": {
            "invitee_node_id": newcomer.node_id_full, "display_name": "attic", "initial_level": "member",
            "expires_at": rfc3339(datetime.now(timezone.utc) + timedelta(hours=1))}})))["output"]["event"]
        joined = build_event(newcomer, svc.log.community_id, invite["lamport"] + 1, "community.member.joined",
                             {"invite_event_id": invite["event_id"], "node_manifest": {},
                              "admission": build_admission(svc.kp, invite["event_id"], newcomer.node_id_full)})
        assert (await svc.ingest(req("community.log.ingest", {"events": [joined]})))["output"]["accepted"] == 1

    async def count(svc: LedgerService) -> int:
        return svc.log.count()

    run(cfg, grow)
    assert read_community_manifest(cfg.community_manifest_path)["head_lamport"] == 5
    (cfg.community.state_dir / "events.sqlite").rename(cfg.community.state_dir / "events.sqlite.aside")
    assert run(cfg, count) == 0  # an empty log waits for sync: the peer holds the real genesis



def test_members_get_is_the_event_log_membership(cfg: Config) -> None:
    async def body(svc: LedgerService) -> dict[str, Any]:
        return (await svc.members_get(req("community.members.get")))["output"]

    out = run(cfg, body)
    assert out["members"] == [{"node_id": cfg.community.community_id, "level": "anchor",
                               "added_at": out["members"][0]["added_at"],
                               "added_by": cfg.community.community_id}]
    assert out["revoked"] == [] and out["head_lamport"] == 3


def test_frontier_lists_what_a_revocation_of_that_node_must_carry(cfg: Config) -> None:
    async def body(svc: LedgerService) -> None:
        out = (await svc.frontier(req("community.log.frontier", {"target_node_id": svc.kp.node_id_full})))["output"]
        assert out["frontier"] == sorted(e["event_id"] for e in svc.log.events())  # the founder's genesis
        stranger = keys.generate().node_id_full
        assert (await svc.frontier(req("community.log.frontier", {"target_node_id": stranger})))["output"] == {
            "frontier": []}
        for bad in ({}, {"target_node_id": "bob"}, {"target_node_id": 7}):
            with pytest.raises(HearthNetError) as err:
                await svc.frontier(req("community.log.frontier", bad))
            assert err.value.code == "bad_request"

    run(cfg, body)


def test_a_revocation_deletes_what_its_frontier_lacks_and_rewrites_the_manifest(cfg: Config) -> None:
    async def body(svc: LedgerService) -> dict[str, Any]:
        async def append(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
            return (await svc.append(req("community.log.append", {"event_type": event_type, "data": data})))["output"]["event"]

        await append("community.policy.updated", {"policy": {**svc.log.view.policy, "min_signatures_to_revoke": 1}})
        bad = keys.generate()
        invite = await append("community.member.invited", {
            "invitee_node_id": bad.node_id_full, "display_name": "bad", "initial_level": "member",
            "expires_at": rfc3339(datetime.now(timezone.utc) + timedelta(hours=1))})
        joined = build_event(bad, svc.log.community_id, svc.log.clock + 1, "community.member.joined",
                             {"invite_event_id": invite["event_id"], "node_manifest": {},
                              "admission": build_admission(svc.kp, invite["event_id"], bad.node_id_full)})
        assert (await svc.ingest(req("community.log.ingest", {"events": [joined]})))["output"]["accepted"] == 1
        frontier = (await svc.frontier(req("community.log.frontier", {"target_node_id": bad.node_id_full})))
        revoke = build_event(svc.kp, svc.log.community_id, svc.log.clock + 5, "community.member.revoked", {
            "target_node_id": bad.node_id_full, "reason": "compromised", "co_signers": [],
            "frontier": frontier["output"]["frontier"]})
        unseen = build_event(bad, svc.log.community_id, svc.log.clock + 1, "file.cid.unpinned", {"cid": "x"})
        assert (await svc.ingest(req("community.log.ingest", {"events": [unseen]})))["output"]["accepted"] == 1
        out = await svc.ingest(req("community.log.ingest", {"events": [revoke]}))
        assert out["output"]["accepted"] == 1 and out["meta"]["purged"] == 1
        assert svc.log.get(unseen["event_id"]) is None and svc.log.get(joined["event_id"]) is not None
        return {"bad": bad.node_id_full}

    result = run(cfg, body)
    on_disk = read_community_manifest(cfg.community_manifest_path)
    assert [r["node_id"] for r in on_disk["revoked"]] == [result["bad"]]
