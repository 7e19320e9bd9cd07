"""Big file transfers yield to small ones while this node is offline (issue 10; README
"Emergency detector"). One gate, one rule, two directions (lanes):

- *serving*: the file worker serves every transfer through `file.read`, one batch of
  chunks per call; each served stream is counted by its file's size. A stream of a file
  over FILE_BIG_TRANSFER_BYTES waits before each chunk while a small stream is being
  served, and at most one big stream sends at a time.
- *downloading*: this node's own fetches (hearthnet.blobs.transfer, behind `file.get` and
  the rag replicator), counted by the manifest's size. A big download stops asking for
  chunks while a small download is in progress (the chunks it has stay; the rest of its
  batch goes back in its queue) and goes on when none is left or the node is back online.

So a photo or a form gets through while a video waits. Only while the node's emergency
mode is offline (hearthnet.emergency.effects.big_files_yield); online, or without a
detector, nothing waits, and a big transfer waiting when the node comes back goes on at
once. The lanes do not mix: a small download does not hold a big stream we serve."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

from hearthnet.constants import FILE_BIG_TRANSFER_BYTES
from hearthnet.emergency.effects import big_files_yield


class _Lane:
    """One direction: its small transfers in progress and the waits of its big ones."""

    def __init__(self) -> None:
        self.small = 0
        self.waits = 0


class TransferGate:
    def __init__(self, big_bytes: int = FILE_BIG_TRANSFER_BYTES) -> None:
        self.big_bytes = big_bytes
        self.mode: str | None = None
        self._serve, self._fetch = _Lane(), _Lane()
        self._changed = asyncio.Event()  # replaced at each change: a small one ended, the mode moved
        self._big = asyncio.Lock()  # the one big served stream while yielding

    # ------------------------------------------------------------------ the rule

    def set_mode(self, mode: str | None, state: Any = None) -> None:
        self.mode = mode
        self._wake()  # back online: every waiting big transfer goes on

    def is_big(self, size: int) -> bool:
        return size > self.big_bytes

    def _holds(self, lane: _Lane, size: int) -> bool:
        return self.is_big(size) and big_files_yield(self.mode) and lane.small > 0

    async def _wait(self, lane: _Lane, size: int) -> None:
        """Until nothing holds a big transfer back; one wait counted per call held."""
        if not self._holds(lane, size):
            return
        lane.waits += 1
        while self._holds(lane, size):
            await self._changed.wait()

    @contextlib.asynccontextmanager
    async def _small(self, lane: _Lane) -> AsyncIterator[None]:
        lane.small += 1
        try:
            yield
        finally:
            lane.small -= 1
            if not lane.small:
                self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ serving (file.read)

    @contextlib.asynccontextmanager
    async def serving(self, size: int) -> AsyncIterator[None]:
        """Around one served stream; big ones take the one big slot while yielding."""
        if not self.is_big(size):
            async with self._small(self._serve):
                yield
        elif big_files_yield(self.mode):
            async with self._big:
                yield
        else:
            yield

    async def pace(self, size: int) -> None:
        """Before each chunk of a served stream: a big one waits while small ones are served."""
        await self._wait(self._serve, size)

    # ------------------------------------------------------------------ downloading (blobs.transfer)

    @contextlib.asynccontextmanager
    async def downloading(self, size: int) -> AsyncIterator[None]:
        """Around the chunk fetching of one download of a blob of `size` bytes."""
        if self.is_big(size):
            yield
        else:
            async with self._small(self._fetch):
                yield

    def download_holds(self, size: int) -> bool:
        """A big download should ask for no more chunks now."""
        return self._holds(self._fetch, size)

    async def pace_download(self, size: int) -> None:
        """Before a download asks a source for chunks: a big one waits while small ones run."""
        await self._wait(self._fetch, size)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        return {"big_file_bytes": self.big_bytes, "yielding": big_files_yield(self.mode),
                "small_streams": self._serve.small, "big_chunk_waits": self._serve.waits,
                "small_downloads": self._fetch.small, "big_download_waits": self._fetch.waits}
