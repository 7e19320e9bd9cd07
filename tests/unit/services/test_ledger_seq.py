"""community.log.subscribe / .events by seq: the resume logic of live feeds."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hearthnet.config import Config
from hearthnet.errors import HearthNetError
from hearthnet.services.ledger import LedgerService
from tests.unit.ledger.conftest import post_data
from tests.unit.services.test_ledger import cfg, req, run  # noqa: F401  (fixture)
from tests.unit.xdg_fixture import isolated_xdg  # noqa: F401  (autouse)


async def post(svc: LedgerService, n: int) -> dict[str, Any]:
    out = await svc.append(req("community.log.append", {"event_type": "market.post.created", "data": post_data(n)}))
    return out["output"]["event"]


async def take(frames: Any, n: int) -> list[tuple[str, Any]]:
    return [await asyncio.wait_for(frames.__anext__(), 5) for _ in range(n)]


def test_resume_after_a_seq_gives_the_stored_ones_then_the_live_ones_once(cfg: Config) -> None:  # noqa: F811
    async def body(svc: LedgerService) -> None:
        first = await post(svc, 1)
        mark = svc.log.seq
        missed = [await post(svc, n) for n in (2, 3)]
        frames = await svc.subscribe(req("community.log.subscribe", {"after_seq": mark}, stream=True))
        (name, hello), *caught = await take(frames, 3)
        assert name == "subscribed" and hello["seq"] == mark
        assert [(n, d["seq"], d["event"]) for n, d in caught] == [
            ("event", mark + 1, missed[0]), ("event", mark + 2, missed[1])]
        live = await post(svc, 4)
        assert await take(frames, 1) == [("event", {"seq": mark + 3, "event": live})]
        await frames.aclose()
        assert first["event_id"] not in {d["event"]["event_id"] for _, d in caught}

    run(cfg, body)


def test_events_stored_during_the_catch_up_come_once(cfg: Config) -> None:  # noqa: F811
    async def body(svc: LedgerService) -> None:
        for n in range(5):
            await post(svc, n)
        frames = await svc.subscribe(req("community.log.subscribe", {"after_seq": 0, "event_types":
                                                                      ["market.post.created"]}, stream=True))
        assert (await take(frames, 1))[0][0] == "subscribed"
        # The subscription is live; these land in the queue AND (some) in the catch-up reads.
        more = await asyncio.gather(*(post(svc, n) for n in range(5, 10)))
        got = await take(frames, 10)
        seqs = [d["seq"] for _, d in got]
        assert seqs == sorted(set(seqs)) and len(seqs) == 10
        assert [d["event"] for _, d in got][5:] == sorted(more, key=lambda e: e["lamport"])
        await frames.aclose()

    run(cfg, body)


def test_live_only_with_seq_starts_at_the_high_water_mark(cfg: Config) -> None:  # noqa: F811
    async def body(svc: LedgerService) -> None:
        await post(svc, 1)
        frames = await svc.subscribe(req("community.log.subscribe", {"with_seq": True}, stream=True))
        (name, hello), = await take(frames, 1)
        assert hello["seq"] == svc.log.seq
        ev = await post(svc, 2)
        assert await take(frames, 1) == [("event", {"seq": hello["seq"] + 1, "event": ev})]
        await frames.aclose()
        ahead = await svc.subscribe(req("community.log.subscribe", {"after_seq": 10 ** 9}, stream=True))
        assert (await take(ahead, 1))[0][1]["seq"] == svc.log.seq  # a token from elsewhere: from now
        await ahead.aclose()
        plain = await svc.subscribe(req("community.log.subscribe", {}, stream=True))
        assert (await take(plain, 1))[0][0] == "subscribed"
        ev = await post(svc, 3)
        assert await take(plain, 1) == [("event", ev)]  # the old frames are unchanged
        await plain.aclose()
        out = await svc.events(req("community.log.events", {"after_seq": hello["seq"]}))
        assert out["output"]["seqs"] == [hello["seq"] + 1, hello["seq"] + 2]

    run(cfg, body)


def test_with_seq_false_and_after_seq_is_refused(cfg: Config) -> None:  # noqa: F811
    async def body(svc: LedgerService) -> None:
        with pytest.raises(HearthNetError) as err:
            await svc.subscribe(req("community.log.subscribe", {"after_seq": 1, "with_seq": False}, stream=True))
        assert err.value.code == "bad_request"

    run(cfg, body)
