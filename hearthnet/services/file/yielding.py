"""Big file transfers yield to small ones while this node is offline (issue 10; README
"Emergency detector"). The file worker serves every transfer through `file.read`, one
batch of chunks per call; each served stream is counted by its file's size. While the
node's emergency mode is offline, a stream of a file over FILE_BIG_TRANSFER_BYTES waits
before each chunk until no small stream is being served, and at most one big stream
sends at a time: a photo or a form gets through while a video waits. Online (or without
a detector), nothing waits."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

from hearthnet.constants import FILE_BIG_TRANSFER_BYTES
from hearthnet.emergency.effects import big_files_yield


class TransferGate:
    def __init__(self, big_bytes: int = FILE_BIG_TRANSFER_BYTES) -> None:
        self.big_bytes = big_bytes
        self.mode: str | None = None
        self.small = 0  # small streams being served
        self.big_waits = 0  # chunks of big streams held back so far (for status and tests)
        self._no_small = asyncio.Event()
        self._no_small.set()
        self._big = asyncio.Lock()

    def set_mode(self, mode: str | None, state: Any = None) -> None:
        self.mode = mode

    def is_big(self, size: int) -> bool:
        return size > self.big_bytes

    @contextlib.asynccontextmanager
    async def serving(self, size: int) -> AsyncIterator[None]:
        """Around one served stream; big ones take the one big slot while yielding."""
        if self.is_big(size):
            if big_files_yield(self.mode):
                async with self._big:
                    yield
            else:
                yield
            return
        self.small += 1
        self._no_small.clear()
        try:
            yield
        finally:
            self.small -= 1
            if not self.small:
                self._no_small.set()

    async def pace(self, size: int) -> None:
        """Before each chunk of a stream: a big one waits while small ones are served."""
        if self.is_big(size) and big_files_yield(self.mode) and self.small:
            self.big_waits += 1
            await self._no_small.wait()

    def status(self) -> dict[str, Any]:
        return {"big_file_bytes": self.big_bytes, "yielding": big_files_yield(self.mode),
                "small_streams": self.small, "big_chunk_waits": self.big_waits}
