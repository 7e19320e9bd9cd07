"""`experimental.echo@1.0`: returns its input. For tests, tutorials and the bus benchmark
only (DESIGN.md §6); it never stands in for a real service. Streams one `token` frame per
item of `input.items` when called as a stream; with `input.chunks` (and `chunk_bytes`,
at most 256 KiB) it streams that many `chunk` frames shaped like `file.read`'s
(`{"i", "data_b64"}`), for the flow-control tests and benchmark."""
from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

from hearthnet.errors import HearthNetError
from hearthnet.bus.service import Capability, Request

MAX_CHUNKS = 100_000  # bounded: a fuzzer that finds the key gets a stream the deadline ends
MAX_CHUNK_BYTES = 256 * 1024  # a file chunk (svc-market-chat-file §3)


class EchoService:
    name = "echo"

    def capabilities(self) -> list[Capability]:
        return [Capability(
            name="experimental.echo", handler=self.echo, stability="experimental",
            request_schema={"type": "object", "properties": {"input": {"type": "object"}}},
            response_schema={"type": "object"},
            stream_schema={"type": "object", "properties": {"text": {"type": "string"}}},
            max_concurrent=64, trust_required="member", timeout_seconds=30, idempotent=True)]

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def health(self) -> dict[str, Any]:
        return {}

    def echo(self, req: Request) -> Any:
        """A plain handler: the answer at once (no task, bus/worker.py), or a coroutine
        when asked to sleep first, or a stream."""
        delay = req.input.get("sleep_ms", 0)
        if not isinstance(delay, (int, float)) or delay < 0:
            raise HearthNetError("bad_request", "input.sleep_ms must be a non-negative number")
        if req.stream and "chunks" in req.input:
            return self._chunks(*_chunk_input(req.input))
        if req.stream:
            return self._frames(req, float(delay))
        if delay:
            return self._after(req.input, delay)
        return {"output": req.input, "meta": {"ms": delay}}

    async def _after(self, inp: dict[str, Any], delay: float) -> dict[str, Any]:
        await asyncio.sleep(delay / 1000)
        return {"output": inp, "meta": {"ms": delay}}

    async def _frames(self, req: Request, delay: float):
        items = req.input.get("items", [])
        for item in items if isinstance(items, list) else []:
            if delay:
                await asyncio.sleep(delay / 1000)
            yield "token", {"text": str(item), "logprob": None}
        yield "done", {"tokens_out": len(items) if isinstance(items, list) else 0}

    async def _chunks(self, n: int, size: int):
        data = base64.urlsafe_b64encode(os.urandom(size)).rstrip(b"=").decode()  # one payload, reused
        for i in range(n):
            yield "chunk", {"i": i, "data_b64": data}
        yield "done", {"chunks": n, "bytes": n * size}


def _chunk_input(inp: dict[str, Any]) -> tuple[int, int]:
    n, size = inp.get("chunks"), inp.get("chunk_bytes", MAX_CHUNK_BYTES)
    for name, v, top in (("chunks", n, MAX_CHUNKS), ("chunk_bytes", size, MAX_CHUNK_BYTES)):
        if not (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= top):
            raise HearthNetError("bad_request", f"input.{name} must be an integer in [0, {top}]")
    return n, size
