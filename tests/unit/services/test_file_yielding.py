"""Offline, a big transfer waits before each chunk while a small one is being served;
online (or with no detector) nothing waits."""
from __future__ import annotations

import asyncio

from hearthnet.services.file.yielding import TransferGate

BIG, SMALL = 1000, 10


def test_big_streams_wait_for_small_ones_only_while_offline() -> None:
    async def main() -> None:
        gate = TransferGate(big_bytes=100)
        order: list[str] = []

        async def big() -> None:
            async with gate.serving(BIG):
                for i in range(3):
                    await gate.pace(BIG)
                    order.append(f"big{i}")
                    await asyncio.sleep(0.01)

        async def small(release: asyncio.Event) -> None:
            async with gate.serving(SMALL):
                await gate.pace(SMALL)
                order.append("small")
                await release.wait()
                order.append("small-done")

        release = asyncio.Event()
        gate.set_mode("offline")
        s = asyncio.ensure_future(small(release))
        await asyncio.sleep(0.01)
        b = asyncio.ensure_future(big())
        await asyncio.sleep(0.05)
        assert order == ["small"] and gate.status()["big_chunk_waits"] == 1  # the big one waits
        release.set()
        await asyncio.gather(s, b)
        assert order == ["small", "small-done", "big0", "big1", "big2"]

        order.clear()
        release = asyncio.Event()
        gate.set_mode("online")  # restored: no waiting
        s = asyncio.ensure_future(small(release))
        await asyncio.sleep(0.01)
        await big()
        assert order == ["small", "big0", "big1", "big2"]
        release.set()
        await s
        assert gate.status() == {"big_file_bytes": 100, "yielding": False, "small_streams": 0,
                                 "big_chunk_waits": 1, "small_downloads": 0, "big_download_waits": 0}

    asyncio.run(main())


def test_one_big_stream_at_a_time_while_offline() -> None:
    async def main() -> None:
        gate = TransferGate(big_bytes=100)
        gate.set_mode("offline")
        inside: list[int] = []
        peak = [0]

        async def big() -> None:
            async with gate.serving(BIG):
                inside.append(1)
                peak[0] = max(peak[0], len(inside))
                await asyncio.sleep(0.01)
                inside.pop()

        await asyncio.gather(big(), big(), big())
        assert peak[0] == 1

    asyncio.run(main())


def test_a_waiting_big_stream_goes_on_when_the_node_is_back_online() -> None:
    async def main() -> None:
        gate = TransferGate(big_bytes=100)
        gate.set_mode("offline")
        release = asyncio.Event()

        async def small() -> None:
            async with gate.serving(SMALL):
                await release.wait()

        s = asyncio.ensure_future(small())
        await asyncio.sleep(0)
        big = asyncio.ensure_future(gate.pace(BIG))
        await asyncio.sleep(0.01)
        assert not big.done() and gate.status()["big_chunk_waits"] == 1
        gate.set_mode("online")  # the small stream is still being served
        await big
        release.set()
        await s

    asyncio.run(main())


def test_the_directions_do_not_mix() -> None:
    """A small download holds big downloads only, a small served stream big streams only."""
    async def main() -> None:
        gate = TransferGate(big_bytes=100)
        gate.set_mode("offline")
        async with gate.downloading(SMALL):
            assert gate.status()["small_downloads"] == 1 and gate.download_holds(BIG)
            assert not gate.download_holds(SMALL)
            await gate.pace(BIG)  # a served big stream does not wait for our download
        async with gate.serving(SMALL):
            assert not gate.download_holds(BIG)
            await gate.pace_download(BIG)
        assert gate.status()["big_chunk_waits"] == gate.status()["big_download_waits"] == 0

    asyncio.run(main())
