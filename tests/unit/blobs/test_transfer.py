"""The transfer manager with in-memory sources: a shared queue of missing chunks, one
puller per source, every chunk verified, bad or failed chunks retried elsewhere, 3
failures of one chunk -> partition, resume from what the store holds; BusSource over a
fake bus."""
from __future__ import annotations

import asyncio
import threading
import os
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from hearthnet.blobs.cids import CHUNK_SIZE_BYTES, BlobError, b64encode, hash_bytes
from hearthnet.blobs.manifest import BlobManifest
from hearthnet.blobs.store import BlobStore
from hearthnet.blobs.transfer import BusSource, FetchProgress, TransferManager
from hearthnet.errors import HearthNetError


class Blob:
    def __init__(self, n_chunks: int, tail: int = 1000, data: bytes | None = None) -> None:
        self.data = data if data is not None else os.urandom(CHUNK_SIZE_BYTES * (n_chunks - 1) + tail)
        self.chunks = [self.data[o:o + CHUNK_SIZE_BYTES] for o in range(0, len(self.data), CHUNK_SIZE_BYTES)]
        self.manifest = BlobManifest.build([hash_bytes(c) for c in self.chunks], len(self.data),
                                           filename="flood-map.pdf")

    @property
    def cid(self) -> str:
        return self.manifest.cid


class InFlight:
    """Chunks asked for and not yet consumed, across every source: the memory bound."""

    def __init__(self) -> None:
        self.now = self.peak = 0

    def add(self, n: int) -> None:
        self.now += n
        self.peak = max(self.peak, self.now)


class MemSource:
    def __init__(self, node_id: str, blob: Blob, *, delay: float = 0.0, corrupt: set[int] = frozenset(),
                 lacks: set[int] = frozenset(), fail_calls: bool = False, has_manifest: bool = True,
                 manifest_doc: dict[str, Any] | None = None, block_at: int | None = None,
                 tracker: InFlight | None = None) -> None:
        self.node_id, self.blob, self.delay = node_id, blob, delay
        self.corrupt, self.lacks, self.fail_calls = set(corrupt), set(lacks), fail_calls
        self.has_manifest, self.manifest_doc, self.block_at = has_manifest, manifest_doc, block_at
        self.tracker = tracker or InFlight()
        self.calls: list[list[int]] = []
        self.manifest_asks = 0

    async def manifest(self, cid: str) -> dict[str, Any]:
        self.manifest_asks += 1
        if not self.has_manifest or cid != self.blob.cid:
            raise BlobError("not_found", "not here")
        return self.manifest_doc if self.manifest_doc is not None else self.blob.manifest.to_wire()

    async def chunks(self, cid: str, indexes: list[int]) -> AsyncIterator[tuple[int, bytes]]:
        self.calls.append(list(indexes))
        self.tracker.add(len(indexes))
        consumed = 0
        try:
            if self.fail_calls:
                raise HearthNetError("partition", "the peer went away")
            for i in indexes:
                if self.delay:
                    await asyncio.sleep(self.delay)
                if i == self.block_at:
                    await asyncio.Event().wait()  # a peer that stops answering
                if i in self.lacks:
                    raise BlobError("not_found", f"chunk {i} is not here")
                data = self.blob.chunks[i]
                if i in self.corrupt:
                    data = bytes([data[0] ^ 1]) + data[1:]
                yield i, data
                consumed += 1
                self.tracker.now -= 1
        finally:
            self.tracker.now -= len(indexes) - consumed


def served(source: MemSource) -> set[int]:
    return {i for call in source.calls for i in call}


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", min_free_bytes=0)


def fetch(manager: TransferManager, cid: str, sources: list[Any], progress: Any = None) -> Any:
    return asyncio.run(manager.fetch(cid, sources, progress=progress))


def test_one_source_fetches_every_chunk_verified(store: BlobStore) -> None:
    blob = Blob(5)
    seen: list[FetchProgress] = []
    result = fetch(TransferManager(store, batch=2), blob.cid, [MemSource("a", blob)], seen.append)
    assert store.read_blob_bytes(blob.cid) == blob.data
    assert result.manifest == blob.manifest and result.from_nodes == {"a": 5}
    assert (result.fetched_chunks, result.fetched_bytes, result.resumed_chunks) == (5, len(blob.data), 0)
    assert store.read_manifest(blob.cid).filename == "flood-map.pdf"
    assert seen[-1].done_bytes == seen[-1].total_bytes == len(blob.data)
    assert seen[0].sources_active == 1 and seen[-1].rate_bytes_s > 0
    assert [p.done_bytes for p in seen] == sorted(p.done_bytes for p in seen)


def test_corrupt_source_is_dropped_and_its_chunks_land_from_the_others(store: BlobStore) -> None:
    blob = Blob(24)
    bad = MemSource("bad", blob, corrupt=set(range(24)))
    good = [MemSource("a", blob, delay=0.002), MemSource("b", blob, delay=0.002)]
    manager = TransferManager(store, batch=2)
    result = fetch(manager, blob.cid, [bad, *good])
    assert store.read_blob_bytes(blob.cid) == blob.data
    assert served(bad), "the corrupt source was asked for chunks"
    assert "bad" not in result.from_nodes and sum(result.from_nodes.values()) == 24
    assert served(bad) <= served(good[0]) | served(good[1]), "its chunks were fetched elsewhere"
    assert result.dropped == ["bad"] and result.failures["bad"] >= 3
    assert manager.score("bad") < manager.score("a")


def test_faster_source_serves_more_chunks(store: BlobStore) -> None:
    blob = Blob(40, tail=10)
    slow, fast = MemSource("slow", blob, delay=0.05), MemSource("fast", blob)
    result = fetch(TransferManager(store, batch=2), blob.cid, [slow, fast])
    assert store.read_blob_bytes(blob.cid) == blob.data
    assert result.from_nodes["fast"] > result.from_nodes.get("slow", 0)


def test_a_chunk_failing_everywhere_is_a_partition_after_3_failures(store: BlobStore) -> None:
    blob = Blob(10)
    sources = [MemSource(n, blob, corrupt={5}) for n in ("a", "b", "c")]
    with pytest.raises(HearthNetError) as err:
        fetch(TransferManager(store, batch=2), blob.cid, sources)
    assert err.value.code == "partition" and "chunk 5" in err.value.message
    assert sum(5 in served(s) for s in sources) == 3, "each source tried it once"
    missing = store.missing(store.read_manifest(blob.cid))
    assert 5 in missing and len(missing) < 10, "the good chunks stay for a resume"


def test_a_missing_chunk_is_fetched_from_another_source(store: BlobStore) -> None:
    blob = Blob(8)
    partial = MemSource("partial", blob, lacks={1, 2, 6})
    full = MemSource("full", blob, delay=0.01)
    result = fetch(TransferManager(store, batch=4), blob.cid, [partial, full])
    assert store.read_blob_bytes(blob.cid) == blob.data
    assert result.from_nodes["full"] >= 3


def test_holders_lacking_a_chunk_do_not_end_the_fetch_while_another_has_it(store: BlobStore) -> None:
    blob = Blob(6)
    partial = [MemSource(n, blob, lacks={2}) for n in ("p1", "p2", "p3", "p4")]
    full = MemSource("full", blob, delay=0.02)
    result = fetch(TransferManager(store, batch=1), blob.cid, [*partial, full])
    assert store.read_blob_bytes(blob.cid) == blob.data
    assert 2 in served(full) and result.from_nodes["full"] >= 1


def test_a_chunk_missing_everywhere_is_a_partition(store: BlobStore) -> None:
    blob = Blob(4)
    with pytest.raises(HearthNetError) as err:
        fetch(TransferManager(store, batch=4), blob.cid, [MemSource(n, blob, lacks={1}) for n in "abc"])
    assert err.value.code == "partition"


def test_a_source_lacking_chunks_alone_is_a_partition_and_chunks_stay(store: BlobStore) -> None:
    blob = Blob(6)
    with pytest.raises(HearthNetError) as err:
        fetch(TransferManager(store, batch=3), blob.cid, [MemSource("b", blob, lacks={3, 4, 5})])
    assert err.value.code == "partition"
    assert store.missing(store.read_manifest(blob.cid)) == [3, 4, 5]


def test_every_source_lost_is_a_partition(store: BlobStore) -> None:
    blob = Blob(6)
    lost = [MemSource("a", blob, fail_calls=True), MemSource("b", blob, fail_calls=True)]
    manager = TransferManager(store, batch=3)
    with pytest.raises(HearthNetError) as err:
        fetch(manager, blob.cid, lost)
    assert err.value.code == "partition"
    assert manager.score("a") < 1.0 and manager.score("b") < 1.0


def test_resume_after_cancel_fetches_only_the_rest(store: BlobStore) -> None:
    blob = Blob(12)

    async def interrupted() -> None:
        stalls = MemSource("a", blob, block_at=5)
        task = asyncio.ensure_future(TransferManager(store, batch=2).fetch(blob.cid, [stalls]))
        while len(store.missing(blob.manifest)) > 12 - 5:  # chunks 0-4 stored, 5 never comes
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())
    reopened = BlobStore(store.root, min_free_bytes=0)  # as after kill -9 of the worker
    assert reopened.missing(reopened.read_manifest(blob.cid)) == list(range(5, 12))
    source = MemSource("b", blob)
    result = fetch(TransferManager(reopened, batch=2), blob.cid, [source])
    assert result.resumed_chunks == 5 and result.fetched_chunks == 7
    assert served(source) == set(range(5, 12))
    assert reopened.read_blob_bytes(blob.cid) == blob.data


def test_wrong_manifest_source_is_skipped(store: BlobStore) -> None:
    blob, other = Blob(4), Blob(4)
    tampered = blob.manifest.to_wire()
    tampered["chunks"][2] = {"i": 2, "cid": hash_bytes(b"evil")}
    liars = [MemSource("other", blob, manifest_doc=other.manifest.to_wire()),
             MemSource("tampered", blob, manifest_doc=tampered)]
    honest = MemSource("honest", blob, delay=0.01)
    result = fetch(TransferManager(store, batch=1), blob.cid, [*liars, honest])
    assert store.read_blob_bytes(blob.cid) == blob.data
    assert result.from_nodes == {"honest": 4}
    assert all(not liar.calls for liar in liars)


def test_only_liars_or_nobody_is_not_found(store: BlobStore) -> None:
    blob, other = Blob(2), Blob(2)
    manager = TransferManager(store)
    for sources in ([], [MemSource("x", blob, has_manifest=False)],
                    [MemSource("y", blob, manifest_doc=other.manifest.to_wire())]):
        with pytest.raises(HearthNetError) as err:
            fetch(manager, blob.cid, sources)
        assert err.value.code == "not_found"
    assert not store.has_manifest(blob.cid)


def test_in_flight_chunks_stay_within_sources_times_batch(store: BlobStore) -> None:
    blob = Blob(30, tail=1)
    tracker = InFlight()
    sources = [MemSource(n, blob, delay=d, tracker=tracker) for n, d in (("a", 0.0), ("b", 0.003), ("c", 0.006))]
    manager = TransferManager(store, batch=3)
    fetch(manager, blob.cid, sources)
    assert store.read_blob_bytes(blob.cid) == blob.data
    assert 0 < tracker.peak <= 3 * 3 and manager.peak_in_flight <= 3 * 3
    assert tracker.now == 0


def test_already_complete_blob_needs_no_source(store: BlobStore) -> None:
    blob = Blob(2)
    store.add_bytes(blob.data, filename="x")
    result = fetch(TransferManager(store), blob.cid, [])
    assert result.fetched_chunks == 0 and result.resumed_chunks == 2


def test_repeated_chunks_are_fetched_once(store: BlobStore) -> None:
    blob = Blob(4, data=bytes(4 * CHUNK_SIZE_BYTES))  # a file of zeros: one chunk CID 4 times
    source = MemSource("a", blob)
    result = fetch(TransferManager(store, batch=8), blob.cid, [source])
    assert result.fetched_chunks == 1 and store.read_blob_bytes(blob.cid) == blob.data


def test_no_room_is_capacity_exceeded(tmp_path: Path) -> None:
    small = BlobStore(tmp_path / "small", min_free_bytes=0, capacity_bytes=CHUNK_SIZE_BYTES)
    blob = Blob(3)
    with pytest.raises(HearthNetError) as err:
        fetch(TransferManager(small), blob.cid, [MemSource("a", blob)])
    assert err.value.code == "capacity_exceeded"


def test_a_stalled_source_times_out_and_the_chunk_lands_elsewhere(store: BlobStore) -> None:
    blob = Blob(6)
    stalls = MemSource("stalls", blob, block_at=2)
    other = MemSource("other", blob, delay=0.05)
    result = fetch(TransferManager(store, batch=3, chunk_timeout=0.3), blob.cid, [stalls, other])
    assert store.read_blob_bytes(blob.cid) == blob.data
    assert result.failures.get("stalls", 0) >= 1 and 2 in served(other)


def test_a_source_sending_what_was_not_asked_is_struck(store: BlobStore) -> None:
    class Pushy(MemSource):
        async def chunks(self, cid: str, indexes: list[int]) -> AsyncIterator[tuple[int, bytes]]:
            self.calls.append(list(indexes))
            for i in range(len(self.blob.chunks)):  # everything, whatever was asked
                yield i, self.blob.chunks[i]

    blob = Blob(8)
    pushy, honest = Pushy("pushy", blob), MemSource("honest", blob, delay=0.01)
    result = fetch(TransferManager(store, batch=2), blob.cid, [pushy, honest])
    assert store.read_blob_bytes(blob.cid) == blob.data
    assert result.failures["pushy"] >= 1


def test_a_disk_filling_up_mid_fetch_is_capacity_exceeded(tmp_path: Path) -> None:
    lock = threading.Lock()  # the two sources' writers run in threads at once

    class FillsUp(BlobStore):
        def write_chunk(self, cid: str, data: bytes | memoryview) -> bool:
            with lock:
                if len(list(self.root.glob("*/*.bin"))) >= 2:
                    raise BlobError("capacity_exceeded", "disk full")
                return super().write_chunk(cid, data)

    store = FillsUp(tmp_path / "full", min_free_bytes=0)
    blob = Blob(6)
    with pytest.raises(HearthNetError) as err:
        fetch(TransferManager(store, batch=2), blob.cid, [MemSource("a", blob), MemSource("b", blob)])
    assert err.value.code == "capacity_exceeded"
    assert len(store.missing(blob.manifest)) == 4


def test_a_slow_disk_holds_back_the_puller_not_memory(tmp_path: Path) -> None:
    """Chunks arriving faster than the store writes them wait in the source (its stream
    window), not in the fetcher: at most WRITE_BACKLOG wait for the writer."""
    from hearthnet.blobs import transfer

    waiting: list[int] = []

    class SlowDisk(BlobStore):
        def write_chunk(self, cid: str, data: bytes | memoryview) -> bool:
            import time
            time.sleep(0.01)
            return super().write_chunk(cid, data)

    manager = TransferManager(SlowDisk(tmp_path / "slow", min_free_bytes=0), batch=40)
    original = transfer._Writer.add

    def add(self: Any, i: int, data: Any) -> None:
        original(self, i, data)
        waiting.append(len(self.items))

    transfer._Writer.add = add  # type: ignore[method-assign]
    try:
        blob = Blob(40, data=None)
        fetch(manager, blob.cid, [MemSource("a", blob)])
    finally:
        transfer._Writer.add = original  # type: ignore[method-assign]
    assert max(waiting) <= transfer.WRITE_BACKLOG


# --------------------------------------------------------------------------- BusSource


class FakeBus:
    """`file.read` streams as the file worker sends them, one holder per node id."""

    def __init__(self, holders: dict[str, tuple[Blob, set[int]]]) -> None:
        self.holders = holders
        self.calls: list[dict[str, Any]] = []
        self.closed = 0

    async def stream(self, cap: str, version: str, body: Any, *, caller: str = "", node: str | None = None,
                     timeout: float | None = None, **_: Any) -> AsyncIterator[tuple[str, Any]]:
        self.calls.append({"cap": cap, "v": version, "body": body, "caller": caller, "node": node,
                           "timeout": timeout})
        try:
            held = self.holders.get(node or "")
            inp = body["input"]
            if held is None or inp["cid"] != held[0].cid:
                yield "error", {"error": "not_found", "message": "unknown cid"}
                return
            blob, lacks = held
            yield "manifest", blob.manifest.to_wire()
            for i in inp["chunks"]:
                if i in lacks:
                    yield "error", {"error": "not_found", "message": f"chunk {i} missing"}
                    return
                yield "chunk", {"i": i, "cid": blob.manifest.chunks[i], "size_bytes": len(blob.chunks[i]),
                                "data_b64": b64encode(blob.chunks[i])}
            yield "done", {"chunks": len(inp["chunks"]), "ms": 1}
        finally:
            self.closed += 1


def test_bus_source_reads_the_manifest_and_chunks_with_targeted_calls() -> None:
    blob = Blob(3)
    bus = FakeBus({"node-a": (blob, set())})
    source = BusSource(bus, "node-a", "me")

    async def scenario() -> tuple[dict[str, Any], list[tuple[int, bytes]]]:
        doc = await source.manifest(blob.cid)
        got = [item async for item in source.chunks(blob.cid, [2, 0])]
        return doc, got

    doc, got = asyncio.run(scenario())
    assert BlobManifest.from_wire(doc, expected_cid=blob.cid) == blob.manifest
    assert got == [(2, blob.chunks[2]), (0, blob.chunks[0])]
    assert [c["body"] for c in bus.calls] == [{"params": {}, "input": {"cid": blob.cid, "chunks": []}},
                                              {"params": {}, "input": {"cid": blob.cid, "chunks": [2, 0]}}]
    assert all(c["cap"] == "file.read" and c["node"] == "node-a" and c["caller"] == "me" for c in bus.calls)
    assert bus.closed == 2


def test_bus_source_errors_are_hearthnet_errors() -> None:
    blob = Blob(2)
    bus = FakeBus({"node-a": (blob, {1})})
    source = BusSource(bus, "node-a", "me")

    async def chunks() -> list[int]:
        return [i async for i, _ in source.chunks(blob.cid, [0, 1])]

    with pytest.raises(HearthNetError) as err:
        asyncio.run(chunks())
    assert err.value.code == "not_found"
    with pytest.raises(HearthNetError) as err:
        asyncio.run(BusSource(bus, "node-b", "me").manifest(blob.cid))
    assert err.value.code == "not_found"


def test_bus_source_refuses_a_malformed_chunk_frame() -> None:
    class Garbled(FakeBus):
        async def stream(self, *args: Any, **kw: Any) -> AsyncIterator[tuple[str, Any]]:
            yield "chunk", {"i": 0, "data_b64": "***"}

    source = BusSource(Garbled({}), "node-a", "me")

    async def chunks() -> list[int]:
        return [i async for i, _ in source.chunks("blake3:" + "0" * 64, [0])]

    with pytest.raises(HearthNetError) as err:
        asyncio.run(chunks())
    assert err.value.code == "bad_request"

    class Huge(FakeBus):
        async def stream(self, *args: Any, **kw: Any) -> AsyncIterator[tuple[str, Any]]:
            yield "chunk", {"i": 0, "data_b64": "A" * (2 * CHUNK_SIZE_BYTES)}

    source = BusSource(Huge({}), "node-a", "me")
    with pytest.raises(HearthNetError) as err:
        asyncio.run(chunks())
    assert err.value.code == "bad_request" and "base64 characters" in err.value.message


def test_fetch_over_bus_sources_uses_every_holder(store: BlobStore) -> None:
    blob = Blob(9)
    bus = FakeBus({"node-a": (blob, {4}), "node-b": (blob, set())})
    sources = [BusSource(bus, n, "me") for n in ("node-a", "node-b", "node-gone")]
    result = fetch(TransferManager(store, batch=2), blob.cid, sources)
    assert store.read_blob_bytes(blob.cid) == blob.data
    assert set(result.from_nodes) <= {"node-a", "node-b"} and sum(result.from_nodes.values()) == 9
    assert not [c for c in bus.calls if c["node"] == "node-gone" and c["body"]["input"]["chunks"]]


class LimitedSource(MemSource):
    """A peer over its rate limit: the first `limited` calls (manifest asks and chunk
    batches alike) are answered `rate_limited`, as a node's peer port does."""

    def __init__(self, node_id: str, blob: Blob, limited: int) -> None:
        super().__init__(node_id, blob)
        self.limited = limited

    def _slow_down(self) -> None:
        if self.limited > 0:
            self.limited -= 1
            raise HearthNetError("rate_limited", "too many calls to file.read; slow down", retry_after_ms=1)

    async def manifest(self, cid: str) -> dict[str, Any]:
        self._slow_down()
        return await super().manifest(cid)

    async def chunks(self, cid: str, indexes: list[int]) -> AsyncIterator[tuple[int, bytes]]:
        self.calls.append([])
        self._slow_down()
        async for item in super().chunks(cid, indexes):
            yield item


def test_a_rate_limited_source_is_waited_for_not_struck(store: BlobStore) -> None:
    """`rate_limited` means "slow down": the batch goes back in the queue and the puller
    waits; the only source is neither struck nor dropped, and the fetch completes."""
    blob = Blob(12)
    source = LimitedSource("a", blob, limited=6)
    result = fetch(TransferManager(store, batch=2), blob.cid, [source])
    assert store.read_blob_bytes(blob.cid) == blob.data
    assert result.from_nodes == {"a": 12} and result.failures == {} and result.dropped == []
    assert source.limited == 0


def test_a_source_that_only_ever_rate_limits_is_struck_in_the_end(store: BlobStore, monkeypatch) -> None:
    """A time of nothing but rate_limited answers counts a strike, so a peer that never
    serves cannot hold a fetch forever: here it is the only source."""
    import hearthnet.blobs.transfer as transfer

    monkeypatch.setattr(transfer, "RATE_LIMIT_BACKOFF_SECONDS", (0.001, 0.001))
    monkeypatch.setattr(transfer, "MAX_RATE_LIMITED_SECONDS", 0.02)
    blob = Blob(4)
    source = LimitedSource("a", blob, limited=10**9)
    source.manifest = MemSource.manifest.__get__(source)  # type: ignore[method-assign]  # the manifest is fine
    with pytest.raises(HearthNetError) as err:
        fetch(TransferManager(store, batch=2), blob.cid, [source])
    assert err.value.code == "partition" and "answered only rate_limited for 0.02 s" in str(err.value.details)
    assert len(source.calls) >= 3  # 3 strikes (0.02 s of refusals each), then dropped
