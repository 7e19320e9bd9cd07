"""Offline, this node's big downloads yield to its small ones (issue 10): the transfer
manager with the file worker's TransferGate and in-memory sources whose pace the test
controls. A big download asks for no chunks while a small one is in progress, stops in
the middle of a batch when one begins (the chunks it has stay, no source is blamed), and
goes on after it, or at once when the node is back online. Online, nothing waits."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from hearthnet.blobs.cids import CHUNK_SIZE_BYTES, hash_bytes
from hearthnet.blobs.manifest import BlobManifest
from hearthnet.blobs.store import BlobStore
from hearthnet.blobs.transfer import FetchResult, TransferManager
from hearthnet.services.file.yielding import TransferGate

BIG_BYTES = 2 * CHUNK_SIZE_BYTES  # the gate's threshold here: the big blob has 6 chunks


class Blob:
    def __init__(self, n_chunks: int) -> None:
        self.data = os.urandom(CHUNK_SIZE_BYTES * (n_chunks - 1) + 1000)
        self.chunks = [self.data[o:o + CHUNK_SIZE_BYTES] for o in range(0, len(self.data), CHUNK_SIZE_BYTES)]
        self.manifest = BlobManifest.build([hash_bytes(c) for c in self.chunks], len(self.data))
        self.cid = self.manifest.cid


class Source:
    """Serves one blob; logs every chunk it sends into `log`; waits on `hold[i]` (when
    given) before sending chunk i."""

    def __init__(self, node_id: str, blob: Blob, log: list[str], name: str,
                 hold: dict[int, asyncio.Event] | None = None) -> None:
        self.node_id, self.blob, self.log, self.name = node_id, blob, log, name
        self.hold = hold or {}
        self.calls: list[list[int]] = []
        self.asked = asyncio.Event()  # set at the first chunk call

    async def manifest(self, cid: str) -> dict[str, Any]:
        return self.blob.manifest.to_wire()

    async def chunks(self, cid: str, indexes: list[int]) -> AsyncIterator[tuple[int, bytes]]:
        self.calls.append(list(indexes))
        self.asked.set()
        for i in indexes:
            if i in self.hold:
                await self.hold[i].wait()
            self.log.append(f"{self.name}{i}")
            yield i, self.blob.chunks[i]


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", min_free_bytes=0)


def offline_gate(mode: str = "offline") -> TransferGate:
    gate = TransferGate(big_bytes=BIG_BYTES)
    gate.set_mode(mode)
    return gate


async def settle() -> None:
    """Let every task run until it blocks (the writer's thread hops included)."""
    for _ in range(20):
        await asyncio.sleep(0.005)


def complete(store: BlobStore, blob: Blob, result: FetchResult) -> None:
    assert store.has_blob(blob.cid) and store.missing(blob.manifest) == []
    assert result.failures == {} and result.dropped == []  # yielding is nobody's fault


def test_a_big_download_asks_for_nothing_while_a_small_one_runs(store: BlobStore) -> None:
    async def main() -> None:
        gate = offline_gate()
        manager = TransferManager(store, batch=2, gate=gate)
        big, small, log = Blob(6), Blob(1), []
        release = asyncio.Event()
        small_src = Source("s", small, log, "small", hold={0: release})
        big_src = Source("b", big, log, "big")
        small_fetch = asyncio.ensure_future(manager.fetch(small.cid, [small_src]))
        await small_src.asked.wait()
        assert gate.status()["small_downloads"] == 1
        big_fetch = asyncio.ensure_future(manager.fetch(big.cid, [big_src]))
        await settle()
        assert big_src.calls == [] and gate.status()["big_download_waits"] == 1  # held
        release.set()
        complete(store, small, await small_fetch)
        complete(store, big, await big_fetch)
        assert log == ["small0"] + [f"big{i}" for i in range(6)]
        assert gate.status()["small_downloads"] == 0

    asyncio.run(main())


def test_a_big_download_stops_mid_batch_and_resumes_after_the_small_one(store: BlobStore) -> None:
    async def main() -> None:
        gate = offline_gate()
        manager = TransferManager(store, batch=4, gate=gate)
        big, small, log = Blob(6), Blob(1), []
        step, release = asyncio.Event(), asyncio.Event()
        big_src = Source("b", big, log, "big", hold={1: step})
        small_src = Source("s", small, log, "small", hold={0: release})
        big_fetch = asyncio.ensure_future(manager.fetch(big.cid, [big_src]))
        await big_src.asked.wait()
        await settle()  # chunk 0 sent; the source waits before chunk 1
        small_fetch = asyncio.ensure_future(manager.fetch(small.cid, [small_src]))
        await small_src.asked.wait()
        step.set()  # chunk 1 arrives while the small download runs: the batch stops there
        await settle()
        assert big_src.calls == [[0, 1, 2, 3]] and log == ["big0", "big1"]
        assert gate.status()["big_download_waits"] == 1
        assert store.missing(big.manifest) == [2, 3, 4, 5]  # what arrived is kept
        release.set()
        complete(store, small, await small_fetch)
        result = await big_fetch
        complete(store, big, result)
        assert log == ["big0", "big1", "small0", "big2", "big3", "big4", "big5"]
        assert big_src.calls[1] == [2, 3, 4, 5] and result.fetched_chunks == 6

    asyncio.run(main())


def test_a_held_big_download_goes_on_when_the_node_is_back_online(store: BlobStore) -> None:
    async def main() -> None:
        gate = offline_gate()
        manager = TransferManager(store, batch=2, gate=gate)
        big, small, log = Blob(6), Blob(1), []
        release = asyncio.Event()
        small_src = Source("s", small, log, "small", hold={0: release})
        big_src = Source("b", big, log, "big")
        small_fetch = asyncio.ensure_future(manager.fetch(small.cid, [small_src]))
        await small_src.asked.wait()
        big_fetch = asyncio.ensure_future(manager.fetch(big.cid, [big_src]))
        await settle()
        assert big_src.calls == []
        gate.set_mode("online")  # the small download is still in progress
        complete(store, big, await big_fetch)
        assert log == [f"big{i}" for i in range(6)]
        release.set()
        complete(store, small, await small_fetch)

    asyncio.run(main())


@pytest.mark.parametrize("mode", ["online", "degraded", None])
def test_nothing_waits_unless_offline(store: BlobStore, mode: str | None) -> None:
    async def main() -> None:
        gate = offline_gate(mode)
        manager = TransferManager(store, batch=2, gate=gate)
        big, small, log = Blob(6), Blob(1), []
        release = asyncio.Event()
        small_src = Source("s", small, log, "small", hold={0: release})
        small_fetch = asyncio.ensure_future(manager.fetch(small.cid, [small_src]))
        await small_src.asked.wait()
        complete(store, big, await manager.fetch(big.cid, [Source("b", big, log, "big")]))
        release.set()
        complete(store, small, await small_fetch)
        assert log == [f"big{i}" for i in range(6)] + ["small0"]
        assert gate.status()["big_download_waits"] == 0

    asyncio.run(main())
