"""`file.read` as the file worker streams it, from a blob store dir, run as a real worker
process by test_transfer_bus.py: python -m tests.unit.blobs.file_read_worker ENDPOINT NAME DIR"""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from hearthnet.blobs.cids import b64encode
from hearthnet.blobs.store import BlobStore
from hearthnet.bus.service import Capability, Request
from hearthnet.bus.worker import run_service


class FileReadService:
    name = "file"

    def __init__(self, root: Path) -> None:
        self.store = BlobStore(root, min_free_bytes=0)

    def capabilities(self) -> list[Capability]:
        return [Capability(name="file.read", handler=self.read, stream_schema={"type": "object"},
                           max_concurrent=8, timeout_seconds=60)]

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> dict[str, Any]:
        return {}

    async def read(self, req: Request) -> Any:
        manifest = self.store.read_manifest(req.input["cid"])
        wanted = req.input.get("chunks")
        return self._frames(manifest, range(len(manifest.chunks)) if wanted is None else wanted)

    async def _frames(self, manifest: Any, wanted: Any):
        yield "manifest", manifest.to_wire()
        for i in wanted:
            data = await asyncio.to_thread(self.store.read_chunk, manifest.chunks[i])
            yield "chunk", {"i": i, "cid": manifest.chunks[i], "size_bytes": len(data), "data_b64": b64encode(data)}
        yield "done", {"chunks": len(wanted), "ms": 0}


if __name__ == "__main__":
    endpoint, name, root = sys.argv[1:4]
    run_service(FileReadService(Path(root)), endpoint, name)
