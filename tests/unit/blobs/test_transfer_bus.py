"""BusSource through a real broker and a real worker process serving `file.read`:
targeted stream calls, base64 chunks, a chunk the holder lacks, leaving a stream early."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from hearthnet.blobs.cids import CHUNK_SIZE_BYTES
from hearthnet.blobs.store import BlobStore
from hearthnet.blobs.transfer import BusSource, TransferManager
from hearthnet.broker.core import Broker
from hearthnet.bus.client import BusClient
from hearthnet.errors import HearthNetError
from hearthnet.testing.waiting import wait_for

REPO = Path(__file__).resolve().parents[3]
NODE = "node-holder"


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[str, BlobStore]]:
    """A broker whose own node is NODE, with one file.read worker over a store; yields
    (the clients' endpoint, that store)."""
    short = Path(f"/tmp/hn-xfer-{os.getpid()}-{time.monotonic_ns() % 10**8}")
    short.mkdir()
    broker = Broker(f"ipc://{short}/w.ipc", f"ipc://{short}/c.ipc", startup_grace=0.0, node_id=NODE)
    thread = threading.Thread(target=broker.serve_forever, daemon=True)
    thread.start()
    store = BlobStore(tmp_path / "holder", min_free_bytes=0)
    proc = subprocess.Popen([sys.executable, "-m", "tests.unit.blobs.file_read_worker", f"ipc://{short}/w.ipc",
                             "file_00", str(store.root)], cwd=REPO)
    try:
        wait_for(lambda: (w := broker.workers.get("file_00")) is not None and w.alive, 20.0, 0.02,
                 message="file worker ready")
        yield f"ipc://{short}/c.ipc", store
    finally:
        proc.kill()
        proc.wait()
        broker.stop()
        thread.join(5)
        shutil.rmtree(short, ignore_errors=True)


def test_fetch_through_the_broker(holder: tuple[str, BlobStore], tmp_path: Path) -> None:
    endpoint, held = holder
    data = os.urandom(5 * CHUNK_SIZE_BYTES + 7)
    manifest = held.add_bytes(data, filename="shelters.csv")
    held.chunk_path(manifest.chunks[3]).unlink()  # the holder lacks one chunk
    mine = BlobStore(tmp_path / "mine", min_free_bytes=0)

    async def scenario() -> None:
        bus = BusClient(endpoint)
        await bus.start()
        try:
            source = BusSource(bus, NODE, "node-me")
            with pytest.raises(HearthNetError) as err:
                await TransferManager(mine, batch=2).fetch(manifest.cid, [source])
            assert err.value.code == "partition"
            assert mine.missing(manifest) == [3], "every chunk the holder had landed, verified"
            held.write_chunk(manifest.chunks[3], data[3 * CHUNK_SIZE_BYTES:4 * CHUNK_SIZE_BYTES])
            result = await TransferManager(mine, batch=2).fetch(manifest.cid, [source])
            assert result.resumed_chunks == 5 and result.from_nodes == {NODE: 1}
            frames = source.chunks(manifest.cid, [0, 1, 2])
            assert (await frames.__anext__())[0] == 0
            await frames.aclose()  # leaving early cancels the call
            assert not bus.pending
        finally:
            await bus.close()

    asyncio.run(scenario())
    assert mine.read_blob_bytes(manifest.cid) == data
    assert mine.read_manifest(manifest.cid).filename == "shelters.csv"
