"""introspect.broker_first: the broker's views are read before status's own bus calls are
sent (those would count in its in-flight figures); supervisord's thread overlaps them."""
from __future__ import annotations

import asyncio

import pytest

from hearthnet.gateway.introspect import broker_first


def test_calls_start_only_after_the_broker_reads_while_the_thread_overlaps_them():
    order: list[str] = []

    async def broker_reads() -> str:
        order.append("broker start")
        await asyncio.sleep(0.02)
        order.append("broker done")
        return "view"

    async def call(name: str) -> str:
        order.append(name)
        return name

    def thread() -> str:
        order.append("thread")
        return "procs"

    async def go():
        return await broker_first(broker_reads(), asyncio.to_thread(thread), call("a"), call("b"))

    first, rest = asyncio.run(go())
    assert first == "view" and rest == ["procs", "a", "b"]
    assert order.index("thread") < order.index("broker done")  # overlapped
    assert order.index("broker done") < order.index("a") and order.index("broker done") < order.index("b")


def test_a_failing_broker_read_cancels_the_thread_and_closes_the_unsent_calls():
    sent: list[str] = []

    async def broken() -> None:
        raise RuntimeError("broker gone")

    async def call() -> None:
        sent.append("call")

    async def slow() -> None:
        await asyncio.sleep(10)

    async def go():
        calls = [call(), call()]
        thread = asyncio.ensure_future(slow())
        with pytest.raises(RuntimeError, match="broker gone"):
            await broker_first(broken(), thread, *calls)
        await asyncio.sleep(0)
        return thread, calls

    thread, calls = asyncio.run(go())
    assert thread.cancelled()
    assert sent == []
    assert all(c.cr_frame is None for c in calls)  # closed, never run
