"""The local API thread stops cleanly (it once shadowed Thread._stop, so join raised)."""
from __future__ import annotations

import asyncio
from pathlib import Path

from hearthnet.gateway.local_thread import LocalApiThread


class Idle(LocalApiThread):
    async def _serve(self) -> None:  # the real one needs a broker; the lifecycle is the same
        self._stopping = asyncio.Event()
        self.ready.set()
        await self._stopping.wait()


def test_stop_ends_the_thread_without_error(tmp_path: Path) -> None:
    t = Idle(None, tmp_path / "api.sock", "ipc://unused")  # type: ignore[arg-type]
    t.start_and_wait()
    t.stop()
    assert not t.is_alive() and t.error is None
