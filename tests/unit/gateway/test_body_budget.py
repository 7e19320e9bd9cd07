"""The peer port's body budget: totals and per-sender shares, waiting then
capacity_exceeded, small bodies never counted, and every claim given back — on its own,
and through `read_body` and `serve_within` (the peer API's middleware) of a real aiohttp
server on 127.0.0.1."""
from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from hearthnet.errors import HearthNetError
from hearthnet.gateway.bodybudget import BodyBudget, serve_within
from hearthnet.gateway.peer_api import read_body

KiB, MiB = 1024, 1024 * 1024


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --------------------------------------------------------------------------- the budget alone


def test_claims_within_the_budget_are_granted_and_released():
    async def go():
        budget = BodyBudget(4 * MiB, per_sender=4 * MiB)
        a, b = budget.hold("a"), budget.hold("b")
        await a.claim(MiB)
        await b.claim(2 * MiB)
        assert budget.held == 3 * MiB and budget.stats().senders == 2
        a.release()
        b.release()
        b.release()  # idempotent
        return budget.stats()

    stats = run(go())
    assert stats.held == 0 and stats.senders == 0 and stats.peak == 3 * MiB


def test_a_claim_that_does_not_fit_waits_then_gets_capacity_exceeded():
    async def go():
        budget = BodyBudget(2 * MiB, per_sender=2 * MiB, wait_seconds=0.1)
        first = budget.hold("a")
        await first.claim(2 * MiB)
        late = budget.hold("b")
        with pytest.raises(HearthNetError) as err:
            await late.claim(MiB)
        late.release()
        first.release()
        return err.value, budget

    err, budget = run(go())
    assert err.code == "capacity_exceeded" and err.details["retry_after_ms"] > 0
    assert budget.held == 0 and budget.refused == 1 and budget.stats().waiting == 0


def test_a_waiting_claim_gets_room_when_another_request_ends():
    async def go():
        budget = BodyBudget(2 * MiB, per_sender=2 * MiB, wait_seconds=5)
        first = budget.hold("a")
        await first.claim(2 * MiB)
        second = budget.hold("b")
        waiting = asyncio.ensure_future(second.claim(MiB))
        await asyncio.sleep(0.05)
        assert not waiting.done() and budget.stats().waiting == 1
        first.release()
        await waiting
        held = budget.held
        second.release()
        return held, budget.held

    assert run(go()) == (MiB, 0)


def test_one_sender_cannot_take_more_than_its_share():
    async def go():
        budget = BodyBudget(8 * MiB, per_sender=2 * MiB, wait_seconds=0.05)
        greedy = [budget.hold("greedy") for _ in range(3)]
        await greedy[0].claim(2 * MiB)
        with pytest.raises(HearthNetError) as err:
            await greedy[1].claim(MiB)  # the share is used up, although the total is not
        other = budget.hold("other")
        await other.claim(2 * MiB)  # another member still gets in
        for h in (*greedy, other):
            h.release()
        return err.value.code, budget.held

    assert run(go()) == ("capacity_exceeded", 0)


def test_a_body_over_the_share_is_refused_at_once_as_bad_request():
    async def go():
        budget = BodyBudget(8 * MiB, per_sender=2 * MiB, wait_seconds=5)
        hold = budget.hold("a")
        with pytest.raises(HearthNetError) as err:
            await hold.claim(3 * MiB)  # could never fit: no point waiting
        return err.value.code, budget.held

    assert run(go()) == ("bad_request", 0)


def test_small_bodies_are_never_counted_nor_refused():
    async def go():
        budget = BodyBudget(MiB, per_sender=MiB, wait_seconds=0.01)
        big = budget.hold("a")
        await big.claim(MiB)  # the budget is full
        small = [budget.hold("a") for _ in range(100)]
        for h in small:
            await h.claim(64 * KiB)
        held = budget.held
        for h in (big, *small):
            h.release()
        return held, budget.held

    assert run(go()) == (MiB, 0)


def test_a_body_growing_past_small_is_counted_whole():
    async def go():
        budget = BodyBudget(4 * MiB, per_sender=4 * MiB)
        hold = budget.hold("a")
        await hold.claim(60 * KiB)
        assert budget.held == 0
        await hold.claim(10 * KiB)
        held = budget.held
        hold.release()
        return held

    assert run(go()) == 70 * KiB


def test_a_cancelled_waiter_leaves_nothing_behind():
    async def go():
        budget = BodyBudget(MiB, per_sender=MiB, wait_seconds=5)
        first = budget.hold("a")
        await first.claim(MiB)
        second = budget.hold("b")
        task = asyncio.ensure_future(second.claim(MiB))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        second.release()
        first.release()
        return budget.stats()

    stats = run(go())
    assert stats.held == 0 and stats.waiting == 0 and stats.senders == 0


def test_large_buffers_go_back_to_the_system_on_glibc():
    import platform

    from hearthnet.gateway.bodybudget import return_large_buffers_to_os

    assert return_large_buffers_to_os() is (platform.libc_ver()[0] == "glibc")


# --------------------------------------------------------------------------- through a server


async def serve(budget: BodyBudget, gate: asyncio.Event | None = None,
                fail: bool = False) -> tuple[web.AppRunner, int]:
    """A peer-like app: its middleware is the peer API's `serve_within` around a
    contract-error mapping; the handler reads the body."""
    async def errors(request: web.Request, handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except HearthNetError as exc:
            return web.json_response({"error": exc.code, **exc.details}, status=429)

    @web.middleware
    async def middleware(request, handler):
        return await serve_within(budget, request, functools.partial(errors, handler=handler))

    async def echo(request: web.Request) -> web.Response:
        raw = await read_body(request)
        if gate is not None:
            await gate.wait()  # hold the body's bytes while the test looks
        if fail:
            raise RuntimeError("handler failed after reading")
        return web.json_response({"size": len(raw)})

    app = web.Application(middlewares=[middleware])
    app.router.add_post("/echo", echo)
    runner = web.AppRunner(app, handler_cancellation=True, lingering_time=0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


def test_read_body_claims_content_length_and_the_request_end_releases_it():
    async def go():
        budget = BodyBudget(8 * MiB, per_sender=8 * MiB, wait_seconds=0.2)
        gate = asyncio.Event()
        runner, port = await serve(budget, gate)
        try:
            async with aiohttp.ClientSession() as s:
                req = asyncio.ensure_future(s.post(f"http://127.0.0.1:{port}/echo", data=b"x" * (3 * MiB)))
                while budget.held == 0:
                    await asyncio.sleep(0.01)
                held_during = budget.held
                gate.set()
                resp = await req
                body = await resp.json()
        finally:
            await runner.cleanup()
        return held_during, body, budget.held

    held_during, body, after = run(go())
    assert held_during == 3 * MiB and body == {"size": 3 * MiB} and after == 0


def test_over_the_budget_requests_get_capacity_exceeded_and_all_is_given_back():
    async def go():
        budget = BodyBudget(4 * MiB, per_sender=4 * MiB, wait_seconds=0.2)
        gate = asyncio.Event()
        runner, port = await serve(budget, gate)
        statuses: list[Any] = []
        try:
            async with aiohttp.ClientSession() as s:
                async def one() -> None:
                    try:
                        async with s.post(f"http://127.0.0.1:{port}/echo", data=b"x" * (3 * MiB)) as r:
                            statuses.append((r.status, json.loads(await r.read())))
                    except aiohttp.ClientError as exc:  # refused mid-upload: connection closed
                        statuses.append(type(exc).__name__)

                tasks = [asyncio.ensure_future(one()) for _ in range(4)]
                while budget.refused < 3:
                    await asyncio.sleep(0.01)
                assert budget.held == 3 * MiB  # only one of the four fits
                gate.set()
                await asyncio.gather(*tasks)
        finally:
            await runner.cleanup()
        return statuses, budget.stats()

    statuses, stats = run(go())
    assert (200, {"size": 3 * MiB}) in statuses
    refused = [s for s in statuses if s != (200, {"size": 3 * MiB})]
    assert len(refused) == 3
    assert all(s == "ClientOSError" or s[1]["error"] == "capacity_exceeded" for s in refused)
    assert stats.held == 0 and stats.waiting == 0


def test_a_chunked_body_is_claimed_as_it_arrives():
    async def go():
        budget = BodyBudget(MiB, per_sender=MiB, wait_seconds=0.2)
        runner, port = await serve(budget)

        async def chunks():
            for _ in range(32):
                yield b"y" * (64 * KiB)  # 2 MiB in all, no Content-Length

        try:
            async with aiohttp.ClientSession() as s:
                try:
                    async with s.post(f"http://127.0.0.1:{port}/echo", data=chunks()) as r:
                        out = (r.status, await r.json())
                except aiohttp.ClientError as exc:
                    out = type(exc).__name__
        finally:
            await runner.cleanup()
        return out, budget.stats()

    out, stats = run(go())
    assert out == "ClientOSError" or out[0] == 429 and out[1]["error"] in ("capacity_exceeded", "bad_request")
    assert stats.refused == 1 and stats.held == 0


@pytest.mark.parametrize("how", ["handler_error", "client_gone"])
def test_every_way_a_request_ends_gives_its_bytes_back(how):
    async def go():
        budget = BodyBudget(8 * MiB, per_sender=8 * MiB)
        gate = asyncio.Event()
        runner, port = await serve(budget, gate if how == "client_gone" else None,
                                   fail=how == "handler_error")
        try:
            async with aiohttp.ClientSession() as s:
                req = asyncio.ensure_future(s.post(f"http://127.0.0.1:{port}/echo", data=b"z" * (2 * MiB)))
                if how == "client_gone":
                    while budget.held == 0:
                        await asyncio.sleep(0.01)
                    req.cancel()  # the client leaves while the handler holds the body
                    await asyncio.gather(req, return_exceptions=True)
                else:
                    resp = await req
                    assert resp.status == 500
                for _ in range(200):
                    if budget.held == 0:
                        break
                    await asyncio.sleep(0.01)
        finally:
            await runner.cleanup()
        return budget.stats()

    stats = run(go())
    assert stats.held == 0 and stats.senders == 0 and stats.peak == 2 * MiB


def test_a_large_reply_is_not_kept_after_it_is_sent():
    """aiohttp keeps a keep-alive connection's last response until its next request:
    a large reply's bytes must not stay with it."""
    async def go():
        budget = BodyBudget(8 * MiB)
        sent: list[web.Response] = []

        async def big(request: web.Request) -> web.Response:
            sent.append(web.Response(body=b"r" * MiB))
            return sent[-1]

        @web.middleware
        async def middleware(request, handler):
            return await serve_within(budget, request, handler)

        app = web.Application(middlewares=[middleware])
        app.router.add_get("/big", big)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            async with aiohttp.ClientSession() as s:  # the connection stays open (keep-alive)
                async with s.get(f"http://127.0.0.1:{port}/big") as r:
                    got = len(await r.read())
                return got, sent[0].body
        finally:
            await runner.cleanup()

    assert run(go()) == (MiB, None)
