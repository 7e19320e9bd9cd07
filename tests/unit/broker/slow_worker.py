"""A configurable service run as a real worker process by the broker tests:
python -m tests.unit.broker.slow_worker ENDPOINT NAME CAP MAX_CONCURRENT IDEMPOTENT
(HN_TEST_STALL_SECONDS sets its stream stall timeout, for the flow-control tests)"""
from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from hearthnet.bus import flow
from hearthnet.bus.service import Capability, Request
from hearthnet.bus.worker import run_service


class SlowService:
    name = "slow"

    def __init__(self, cap: str, max_concurrent: int, idempotent: bool) -> None:
        self.cap, self.max_concurrent, self.idempotent = cap, max_concurrent, idempotent

    def capabilities(self) -> list[Capability]:
        return [Capability(name=self.cap, handler=self.handle, stability="experimental",
                           stream_schema={"type": "object"}, max_concurrent=self.max_concurrent,
                           idempotent=self.idempotent, timeout_seconds=30)]

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> dict[str, Any]:
        return {}

    async def handle(self, req: Request) -> Any:
        delay = float(req.input.get("sleep_ms", 0)) / 1000
        if req.stream:
            return self._frames(int(req.input.get("frames", 3)), delay)
        await asyncio.sleep(delay)
        return {"output": {"echo": req.input}, "meta": {"tokens_in": 1, "tokens_out": 2}}

    async def _frames(self, n: int, delay: float):
        for i in range(n):
            yield "token", {"text": str(i), "logprob": None}
            await asyncio.sleep(delay)
        yield "done", {"tokens_out": n}


if __name__ == "__main__":
    endpoint, name, cap, maxc, idem = sys.argv[1:6]
    if os.environ.get("HN_TEST_STALL_SECONDS"):
        flow.configure(float(os.environ["HN_TEST_STALL_SECONDS"]))
    run_service(SlowService(cap, int(maxc), idem == "1"), endpoint, name)
